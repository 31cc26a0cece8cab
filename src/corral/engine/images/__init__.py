"""Images: the content store, layers, image metadata, and images built from the host.

- ``digest``   digests and chain IDs
- ``content``  the content-addressed blob store (digest verified while writing)
- ``layers``   safe layer extraction, compression detection, whiteouts
- ``media``    media types, manifests and indexes, platform choice (one table for all)
- ``store``    ImageStore: import, list, tag, remove, prune, inspect, history, disk usage
- ``elf``      ELF parsing and shared-library resolution (for ``from-host``)
- ``fromhost`` minimal images made of host programs and the libraries they need
"""
