"""``corral build``: images from a Containerfile, on the engine's snapshots and runtime.

- ``parser``    the Containerfile grammar: directives, continuations, JSON and shell forms
- ``words``     docker's word splitting and ``$VAR`` expansion
- ``ignore``    ``.containerignore`` / ``.dockerignore`` matching
- ``config``    the image a stage is building: config fields, layers, history
- ``files``     COPY / ADD: sources, globs, hashing, copying inside an untrusted root
- ``cache``     cache keys and the ``build_cache`` table
- ``executor``  the builder: stages, steps as containers, layers (via ``images.diff``)

See docs/build.md for the whole story.
"""
