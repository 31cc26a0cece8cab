"""The builder: a parsed Containerfile run step by step on the engine's snapshots and runtime.

::

    parse ──▶ stages (FROM ... up to the next FROM), the ones --target needs
      for each stage, for each instruction:
        key = cache key (corral.engine.build.cache)      hit ──▶ reuse the layer, "Using cache"
        FROM              the base image's config and layers (or nothing: scratch)
        ENV, LABEL, ...   change the config (corral.engine.build.config), no layer
        RUN               a container of the engine: an active snapshot on the stage's top
                          layer, the image config + build args -> an OCI config, run by
                          corral's runtime (as ``corral run`` would); exit code 0 or the build
                          stops, naming the line
        COPY, ADD         the snapshot mounted on the host, files copied in (files.py)
        then (RUN/COPY/ADD) the snapshot's upper dir -> layer tar (images.diff) -> a blob and
                          a committed snapshot (the layer, unpacked once) -> cached
      the last stage's state -> config + manifest ──▶ an image in the store, tagged

The whole build holds the store lock (one changing command at a time, as for ``pull``), and
everything it makes on the way -- active snapshots, container directories, mounts -- is
removed whether the build succeeds or fails: what stays are complete layers in the cache and,
on success, the image. Progress is podman's plain format: ``STEP 2/7: RUN make``,
``--> Using cache sha256:...``, ``COMMIT name``, the image id last.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from corral.engine.build import files
from corral.engine.build.cache import BuildCache, CacheEntry, step_key
from corral.engine.build.config import ImageState, LayerBlob
from corral.engine.build.ignore import Ignore
from corral.engine.build.parser import (
    Containerfile,
    ContainerfileError,
    Instruction,
    parse,
)
from corral.engine.build.words import expand, key_values
from corral.engine.containers.spec import DEFAULT_PATH
from corral.engine.format import rfc3339
from corral.engine.images.diff import write_diff
from corral.engine.images.layers import apply_layer
from corral.engine.layout import remove_tree
from corral.engine.rootpath import resolve_in_root
from corral.errors import CorralError, NotFoundError, UserError

if TYPE_CHECKING:
    from corral.engine.engine import Engine
    from corral.engine.images.store import Image

SNAPSHOT_PREFIX = "build-"
CONTAINERFILES = ("Containerfile", "Dockerfile")
#: The ARGs every build knows without declaring them (docker's predefined proxy args).
PREDEFINED_ARGS = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
)  # fmt: skip


class BuildError(UserError):
    """A step failed; the message names the Containerfile line."""


@dataclass
class BuildOptions:
    """``corral build`` flags."""

    context: Path
    file: Path | None = None
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False  # --pull: fetch every FROM image again, even one in the store
    quiet: bool = False
    #: How to fetch a base image from its registry (the CLI's: TLS flags, progress on
    #: stderr). None: only images already in the store can be used.
    puller: Callable[[str], Image] | None = None


@dataclass
class Stage:
    index: int
    name: str | None
    base: str  # as written (expanded): an image, "scratch" or an earlier stage's name/index
    instructions: list[Instruction]
    state: ImageState | None = None
    key: str = ""
    arg_env: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildResult:
    image: Image
    steps: int
    cached: int


class Builds:
    """``engine.builds``: build images (``build``) and manage the build cache (``prune``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def build(self, opts: BuildOptions, out: TextIO | None = None) -> BuildResult:
        """Run the build ``opts`` describes; progress to ``out`` (stdout by default)."""
        return Builder(self.engine, out).build(opts)

    def prune(self) -> int:
        """Drop the whole build cache; the number of entries dropped (their layers go unless
        an image uses them)."""
        engine = self.engine
        with engine.locked():
            dropped = BuildCache(engine.db).drop_all()
            engine.snapshots.collect()
            engine.images.collect_blobs()
        return dropped

    def usage(self) -> tuple[int, int]:
        """(entries, bytes of the layers they hold) for ``system df``'s Build Cache row."""
        entries = BuildCache(self.engine.db).entries()
        sizes = {
            e.chain_id: layer.size
            for e in entries
            if (layer := self.engine.snapshots.find_layer(e.chain_id)) is not None
        }
        return len(entries), sum(sizes.values())


class Builder:
    """One build: a Containerfile's stages run on ``engine``'s snapshots and runtime."""

    def __init__(self, engine: Engine, out: TextIO | None = None) -> None:
        self.engine = engine
        self.images = engine.images
        self.containers = engine.containers
        self.out = out if out is not None else sys.stdout
        self.quiet = False
        self._cache: BuildCache | None = None

    @property
    def cache(self) -> BuildCache:
        if self._cache is None:
            self._cache = BuildCache(self.engine.db)
        return self._cache

    def say(self, text: str) -> None:
        if not self.quiet:
            self.out.write(text + "\n")
            self.out.flush()

    # -- the build ------------------------------------------------------------------------------

    def build(self, opts: BuildOptions) -> BuildResult:
        from corral.engine.images.reference import normalize

        self.quiet = opts.quiet
        self.opts = opts
        tags = [normalize(t, "-t") for t in opts.tags]
        context = opts.context
        if not context.is_dir():
            raise UserError(f"build context {str(context)!r}: not a directory")
        path = opts.file or _find_containerfile(context)
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as err:
            raise UserError(f"-f {path}: {err.strerror or err}")
        dockerfile = parse(text, path.name)
        stages, global_args = self._stages(dockerfile, opts)
        self.file = dockerfile
        self.ignore = Ignore.load(context)
        self.context = files.context_root(context)
        self.build_args = dict(opts.build_args)
        self.global_args = global_args
        self.no_cache = opts.no_cache
        self.steps = 0
        self.cached = 0
        self._stage_list = stages
        with self.engine.locked():
            self._sweep()
            wanted = self._needed(stages, opts.target)
            total = len(wanted)
            for number, stage in enumerate(wanted, 1):
                self._run_stage(stage, stages, number, total)
            final = wanted[-1]
            assert final.state is not None
            image = self._commit(final.state, tags)
        self.say(image.id)
        return BuildResult(image, self.steps, self.cached)

    def _stages(
        self, dockerfile: Containerfile, opts: BuildOptions
    ) -> tuple[list[Stage], dict[str, str]]:
        """Split into stages; evaluate the ARGs before the first FROM (they serve FROM lines)."""
        global_args: dict[str, str] = {}
        stages: list[Stage] = []
        for inst in dockerfile.instructions:
            if inst.keyword == "FROM":
                base = expand(inst.args[0], global_args, dockerfile.escape)
                name = inst.args[2].lower() if len(inst.args) == 3 else None
                if name is not None and any(s.name == name for s in stages):
                    raise ContainerfileError(
                        dockerfile.name, inst.line, f"duplicate stage name {name!r}"
                    )
                stages.append(Stage(len(stages), name, base, [inst]))
            elif not stages:
                if inst.keyword != "ARG":
                    raise ContainerfileError(
                        dockerfile.name, inst.line,
                        f"{inst.keyword} before FROM (only ARG may come first)",
                    )  # fmt: skip
                for name, value in _arg_values(inst, global_args, dockerfile.escape,
                                               opts.build_args):  # fmt: skip
                    if value is not None:
                        global_args[name] = value
            else:
                stages[-1].instructions.append(inst)
        if not stages:
            raise UserError(f"{dockerfile.name}: no FROM instruction (nothing to build)")
        return stages, global_args

    def _needed(self, stages: list[Stage], target: str | None) -> list[Stage]:
        """The stages the target needs (FROM an earlier stage, COPY --from), in order."""
        if target is not None:
            found = [s for s in stages if s.name == target.lower()]
            if not found:
                raise UserError(f"--target {target!r}: no stage of that name")
            last = found[0].index
        else:
            last = len(stages) - 1
        need = {last}
        for stage in reversed(stages[: last + 1]):
            if stage.index not in need:
                continue
            refs = [stage.base]
            refs += [i.flags["from"] for i in stage.instructions if "from" in i.flags]
            for ref in refs:
                dep = _stage_ref(stages[: stage.index], ref)
                if dep is not None:
                    need.add(dep.index)
        return [s for s in stages if s.index in need]

    # -- one stage ------------------------------------------------------------------------------

    def _run_stage(self, stage: Stage, stages: list[Stage], number: int, total: int) -> None:
        prefix = f"[{number}/{total}] " if total > 1 else ""
        count = len(stage.instructions)
        for step, inst in enumerate(stage.instructions, 1):
            self.say(f"{prefix}STEP {step}/{count}: {inst.original}")
            self.steps += 1
            try:
                self._step(stage, stages, inst)
            except (ContainerfileError, BuildError):
                raise
            except CorralError as err:
                raise BuildError(f"{self.file.name}:{inst.line}: {inst.keyword}: {err}") from err
            except OSError as err:
                raise BuildError(
                    f"{self.file.name}:{inst.line}: {inst.keyword}: {err.strerror or err}"
                    + (f" ({err.filename})" if err.filename else "")
                ) from err

    def _step(self, stage: Stage, stages: list[Stage], inst: Instruction) -> None:
        if inst.keyword == "FROM":
            self._from(stage, stages, inst)
            return
        state = stage.state
        assert state is not None
        env = {**stage.arg_env, **state.env_map()}
        esc = self.file.escape
        created = rfc3339()
        kw = inst.keyword
        if kw in ("RUN", "COPY", "ADD"):
            {"RUN": self._run, "COPY": self._copy, "ADD": self._copy}[kw](stage, inst, env)
            return
        stage.key = step_key(stage.key, inst.original)
        by = inst.original
        if kw == "ARG":
            for name, value in _arg_values(inst, env, esc, self.build_args):
                if value is None and name in self.global_args:
                    value = self.global_args[name]  # ARG NAME re-declares a global one
                stage.arg_env[name] = value if value is not None else ""
                stage.key = step_key(stage.key, "ARG", [name, value])
        elif kw == "ENV":
            for name, value in self._pairs(inst, env, "ENV"):
                state.set_env(name, value)
                env[name] = value
        elif kw == "LABEL":
            for name, value in self._pairs(inst, env, "LABEL"):
                state.set_map("Labels", name, value)
        elif kw == "MAINTAINER":
            state.author = inst.text
        elif kw == "WORKDIR":
            target = expand(inst.args[0], env, esc)
            state.config["WorkingDir"] = os.path.normpath(os.path.join(state.workdir, target))
        elif kw == "USER":
            state.config["User"] = expand(inst.args[0], env, esc)
        elif kw == "EXPOSE":
            for word in inst.args:
                for port in expand(word, env, esc).split():
                    state.set_map("ExposedPorts", _port(port), {})
        elif kw == "VOLUME":
            for word in inst.args:
                path = word if inst.json else expand(word, env, esc)
                if not path:
                    raise UserError("VOLUME: an empty path")
                state.set_map("Volumes", path, {})
        elif kw == "STOPSIGNAL":
            state.config["StopSignal"] = expand(inst.args[0], env, esc)
        elif kw == "SHELL":
            state.config["Shell"] = list(inst.args)
        elif kw == "CMD":
            state.config["Cmd"] = self._command(state, inst)
            state.cmd_set = True
        elif kw == "ENTRYPOINT":
            state.config["Entrypoint"] = self._command(state, inst)
            if not state.cmd_set:
                state.config.pop("Cmd", None)
        elif kw == "HEALTHCHECK":
            state.config["Healthcheck"] = self._healthcheck(inst)
        elif kw == "ONBUILD":
            state.config["OnBuild"] = [*(state.config.get("OnBuild") or []), inst.args[0]]
        else:  # pragma: no cover - the parser knows no other
            raise UserError(f"unsupported instruction {kw}")
        state.add_history(created, by, empty=True)

    def _pairs(self, inst: Instruction, env: dict[str, str], what: str) -> list[tuple[str, str]]:
        esc = self.file.escape
        if inst.args and "=" not in inst.args[0]:
            # the old form: ENV NAME the rest of the line is the value
            name, _, value = inst.text.partition(" ")
            if not value.strip():
                raise UserError(f"{what} {name}: missing value (say {what} {name}=VALUE)")
            return [(expand(name, env, esc), expand(value.strip(), env, esc))]
        return key_values(inst.args, env, esc, what)

    def _command(self, state: ImageState, inst: Instruction) -> list[str]:
        if inst.json:
            return list(inst.args)
        return [*state.shell, inst.args[0]] if inst.args else []

    def _healthcheck(self, inst: Instruction) -> dict[str, Any]:
        if inst.args == ["NONE"]:
            return {"Test": ["NONE"]}
        check: dict[str, Any] = {"Test": list(inst.args)}
        for flag, key in (
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ):
            if flag in inst.flags:
                check[key] = _duration_ns(inst.flags[flag], f"--{flag}")  # fmt: skip
        if "retries" in inst.flags:
            try:
                check["Retries"] = int(inst.flags["retries"])
            except ValueError:
                raise UserError(f"--retries {inst.flags['retries']!r}: not a number") from None
        return check

    # -- FROM -----------------------------------------------------------------------------------

    def _from(self, stage: Stage, stages: list[Stage], inst: Instruction) -> None:
        platform = inst.flags.get("platform")
        if platform is not None:
            from corral.engine.images.store import host_architecture

            if platform != f"linux/{host_architecture()}":
                raise UserError(f"--platform={platform}: only linux/{host_architecture()} builds")
        earlier = _stage_ref(stages[: stage.index], stage.base)
        if earlier is not None:
            assert earlier.state is not None
            stage.state = earlier.state.copy()
            stage.state.cmd_set = False
            stage.key = step_key(earlier.key, "FROM stage")
            return
        if stage.base == "scratch":
            from corral.engine.images.store import host_architecture

            # a scratch image gets the default PATH, as buildah and BuildKit give it
            stage.state = ImageState(
                config={"Env": [DEFAULT_PATH]}, architecture=host_architecture()
            )
            stage.key = step_key("", "FROM scratch")
            return
        image = self._base_image(stage.base)
        config = self.images.config(image.id)
        layers = [
            LayerBlob(x.blob, x.media_type, x.blob_size, x.diff_id, x.chain_id)
            for x in image.layers
        ]
        stage.state = ImageState.from_image(config, layers, image.id)
        stage.key = step_key("", "FROM", image.id)
        self._run_onbuild(stage, stages, config)

    def _base_image(self, ref: str) -> Image:
        """A FROM image: docker's rules, pulled when missing (or always with ``--pull``);
        ``busybox:latest`` is made from the host's static busybox when missing."""
        from corral.engine.images.reference import normalize

        puller = self.opts.puller
        if self.opts.pull and puller is not None:
            return puller(ref)
        try:
            return self.images.get(ref)
        except NotFoundError:
            if normalize(ref) == "busybox:latest":
                return self.images.ensure_busybox()
            if puller is not None:
                return puller(ref)
            raise NotFoundError(
                f"base image {ref!r} is not in the store (corral pull {ref}, or corral load)"
            ) from None

    def _run_onbuild(self, stage: Stage, stages: list[Stage], config: dict[str, Any]) -> None:
        triggers = list((config.get("config") or {}).get("OnBuild") or [])
        if not triggers:
            return
        assert stage.state is not None
        stage.state.config.pop("OnBuild", None)
        for text in triggers:
            sub = parse(text, f"{self.file.name} (ONBUILD of {stage.base})")
            for inst in sub.instructions:
                self.say(f"--> ONBUILD {inst.original}")
                self._step(stage, stages, inst)

    # -- RUN ------------------------------------------------------------------------------------

    def _run(self, stage: Stage, inst: Instruction, env: dict[str, str]) -> None:
        state = stage.state
        assert state is not None
        if "mount" in inst.flags or inst.flags.get("network", "default") not in ("default", "none"):
            raise UserError("RUN --mount and --network other than none are not supported yet")
        argv = list(inst.args) if inst.json else [*state.shell, inst.args[0]]
        declared = {k: v for k, v in stage.arg_env.items() if k not in state.env_map()}
        key = step_key(stage.key, inst.original, sorted(declared.items()))
        by = (
            ("RUN " + shlex.join(argv))
            if inst.json
            else f"RUN {shlex.join(state.shell)} " + (inst.args[0])
        )
        if declared:
            pairs = " ".join(f"{k}={v}" for k, v in sorted(declared.items()))
            by = f"RUN |{len(declared)} {pairs} " + by[len("RUN ") :]
        if self._reuse(stage, key, by):
            return

        def work(rootfs: str, snapshot: str) -> None:
            files.mkdirs_in_root(rootfs, state.workdir)
            user = ""
            if state.user:  # names are looked up in the image's /etc/passwd and /etc/group
                uid, gid = files.parse_chown(state.user, rootfs, "USER")
                user = f"{uid}:{gid}"
            code = self._run_container(snapshot, state, argv, declared, user)
            if code != 0:
                shown = shlex.join(argv) if inst.json else inst.args[0]
                raise BuildError(f"{self.file.name}:{inst.line}: RUN {shown}: exit code {code}")

        self._layer_step(stage, key, by, work)

    def _run_container(
        self,
        snapshot: str,
        state: ImageState,
        argv: list[str],
        args: dict[str, str],
        user: str,
    ) -> int:
        """Run ``argv`` in a container on the prepared snapshot ``snapshot``; its exit code."""
        from corral.engine.containers.spec import RunOptions, build_spec

        path = self.containers.dir(snapshot)
        image_config = {"config": {
            "Env": state.env, "WorkingDir": state.workdir, "User": user,
        }}  # fmt: skip
        opts = RunOptions(command=argv, env=[f"{k}={v}" for k, v in args.items()], entrypoint="")
        spec = build_spec(image_config, opts, container_id=snapshot, netns=str(path / "netns"))
        self.out.flush()
        return self.containers.run_step(snapshot, spec)

    # -- COPY and ADD ---------------------------------------------------------------------------

    def _copy(self, stage: Stage, inst: Instruction, env: dict[str, str]) -> None:
        state = stage.state
        assert state is not None
        esc = self.file.escape
        words = [expand(w, env, esc) for w in inst.args]
        *sources, dest = words
        as_dir = dest.endswith("/") or dest in (".", "..") or dest.endswith(("/.", "/.."))
        dest = os.path.normpath(os.path.join(state.workdir, dest))
        if as_dir and not dest.endswith("/"):
            dest += "/"
        for flag in ("parents", "exclude", "checksum", "keep-git-dir"):
            if flag in inst.flags:
                raise UserError(f"--{flag} is not supported yet")
        from_ref = inst.flags.get("from")
        if from_ref is not None and inst.keyword == "ADD":
            raise UserError("ADD has no --from (use COPY --from)")
        for src in sources:
            if "://" in src or src.startswith("git@"):
                raise UserError(f"{inst.keyword} {src}: remote sources are not supported "
                                "(corral builds offline: put the file in the context)")  # fmt: skip
        with self._source(from_ref, stage) as source:
            matches = [(src, m) for src in sources for m in source.matches(src)]
            dest_is_dir = dest.endswith("/") or len(matches) > 1
            items: list[files.Item] = []
            archives: list[str] = []
            for _, rel in matches:
                full = os.path.join(source.root, rel)
                if inst.keyword == "ADD" and os.path.isfile(full) and files.is_archive(full):
                    archives.append(full)
                    continue
                items += source.items(rel, dest, dest_is_dir)
            keep_owner = from_ref is not None
            inputs = [files.digest_items(items, keep_owner), [_file_digest(a) for a in archives],
                      inst.flags.get("chown"), inst.flags.get("chmod")]  # fmt: skip
            key = step_key(stage.key, inst.original, inputs)
            flags = [f"--{k}={v}" for k, v in inst.flags.items()]
            by = " ".join([inst.keyword, *flags, *words])
            if self._reuse(stage, key, by):
                return

            def work(rootfs: str, snapshot: str) -> None:
                owner: tuple[int, int] | None = None if keep_owner else (0, 0)
                if "chown" in inst.flags:
                    owner = files.parse_chown(inst.flags["chown"], rootfs, "--chown")
                mode = None
                if "chmod" in inst.flags:
                    try:
                        mode = int(inst.flags["chmod"], 8)
                    except ValueError:
                        raise UserError(f"--chmod {inst.flags['chmod']!r}: not an octal mode")
                todo = items
                files.mkdirs_in_root(rootfs, state.workdir)  # WORKDIR makes its directory
                if dest_is_dir or (not items and archives):
                    files.mkdirs_in_root(rootfs, dest)
                elif (
                    len(items) == 1
                    and not stat.S_ISDIR(items[0].st.st_mode)
                    and os.path.isdir(resolve_in_root(rootfs, dest))
                ):  # COPY file /dst where /dst is a directory in the image: /dst/file
                    name = os.path.basename(items[0].source)
                    todo = [files.Item(items[0].source, os.path.join(dest, name), items[0].st)]
                files.copy_items(rootfs, todo, owner, mode)
                files.fix_dir_times(rootfs, todo)
                for archive in archives:
                    target = files.mkdirs_in_root(rootfs, dest)
                    with open(archive, "rb") as f:
                        apply_layer(f, target, os.path.basename(archive))

            self._layer_step(stage, key, by, work)

    @contextlib.contextmanager
    def _source(self, ref: str | None, stage: Stage) -> Iterator[files.Source]:
        """The root COPY reads from: the context, or an earlier stage / an image, mounted."""
        if ref is None:
            yield files.Source(self.context, self.ignore, "build context")
            return
        earlier = _stage_ref(self._all_stages_before(stage), ref)
        if earlier is not None:
            assert earlier.state is not None
            chain = earlier.state.top_chain
            what = f"stage {ref}"
        else:
            image = self._base_image(ref)
            chain = image.layers[-1].chain_id if image.layers else None
            what = f"image {ref}"
        with self._mounted(chain) as (root, _):
            yield files.Source(root, None, what)

    def _all_stages_before(self, stage: Stage) -> list[Stage]:
        return [s for s in self._stage_list if s.index < stage.index]

    # -- layers ---------------------------------------------------------------------------------

    def _reuse(self, stage: Stage, key: str, by: str) -> bool:
        """On a cache hit, take the cached layer and say so."""
        state = stage.state
        assert state is not None
        if self.no_cache:
            return False
        entry = self.cache.get(key)
        if entry is None:
            return False
        blob = self._ensure_blob(entry)
        if blob is None:
            return False
        parent = state.top_chain
        layer = self.engine.snapshots.layer(entry.chain_id)
        if layer.parent != parent:
            return False
        state.layers.append(LayerBlob(blob, entry.media_type, entry.blob_size, entry.diff_id,
                                      entry.chain_id))  # fmt: skip
        state.add_history(entry.created, by, empty=False)
        stage.key = key
        self.cached += 1
        self.say(f"--> Using cache {entry.chain_id}")
        return True

    def _ensure_blob(self, entry: CacheEntry) -> str | None:
        """The layer's blob; written again from the snapshot when the store dropped it."""
        content = self.images.content
        if content.exists(entry.blob):
            return entry.blob
        layer = self.engine.snapshots.layer(entry.chain_id)
        with content.writer(what="cached layer") as writer:
            stats = write_diff(layer.path, writer)  # type: ignore[arg-type]
            if stats.diff_id != entry.diff_id:
                return None
            return writer.commit()

    def _layer_step(
        self,
        stage: Stage,
        key: str,
        by: str,
        work: Callable[[str, str], None],
    ) -> None:
        """Prepare a snapshot on the stage's top layer, mount it, ``work(rootfs, snapshot)``,
        then turn its upper dir into the stage's next layer (and cache it)."""
        state = stage.state
        assert state is not None
        created = rfc3339()
        parent = state.top_chain
        with self._mounted(parent) as (rootfs, snapshot):
            work(rootfs, snapshot)
            upper = self.engine.snapshots.upper(snapshot)
            self.containers.release(snapshot)  # unmounted before its upper dir is read
            layer = self.images.add_layer(upper, parent, what=by)
        entry = CacheEntry(key, layer.chain_id, layer.diff_id, layer.blob, layer.media_type,
                           layer.blob_size, created)  # fmt: skip
        self.cache.put(entry)
        state.layers.append(LayerBlob(layer.blob, layer.media_type, layer.blob_size,
                                      layer.diff_id, layer.chain_id))  # fmt: skip
        state.add_history(created, by, empty=False)
        stage.key = key
        self.say(f"--> {layer.chain_id[7:19]}")

    @contextlib.contextmanager
    def _mounted(self, chain: str | None) -> Iterator[tuple[str, str]]:
        """An active snapshot on ``chain`` mounted at ``<containers>/<key>/rootfs``; removed
        (unmounted, snapshot and directory deleted) on the way out, whatever happens."""
        from corral.engine.snapshots.overlay import mount

        snapshots = self.engine.snapshots
        key = SNAPSHOT_PREFIX + secrets.token_hex(16)
        path = self.containers.dir(key)
        rootfs = path / "rootfs"
        try:
            path.mkdir(mode=0o700, parents=True)
            rootfs.mkdir(mode=0o755)
            mounts = snapshots.prepare(key, chain)
            mount(mounts, rootfs)
            yield str(rootfs), key
        finally:
            self._remove(key)

    def _remove(self, key: str) -> None:
        with contextlib.suppress(CorralError):
            self.containers.release(key)
        with contextlib.suppress(NotFoundError):
            self.engine.snapshots.remove(key)
        remove_tree(self.containers.dir(key))

    def _sweep(self) -> None:
        """Remove what a build that was killed left (snapshots and directories ``build-*``)."""
        for key, _, _ in self.engine.snapshots.active():
            if key.startswith(SNAPSHOT_PREFIX):
                self._remove(key)
        where = self.engine.layout.containers
        if where.is_dir():
            for entry in os.scandir(where):
                if entry.name.startswith(SNAPSHOT_PREFIX):
                    self._remove(entry.name)

    # -- the image --------------------------------------------------------------------------------

    def _commit(self, state: ImageState, tags: list[str]) -> Image:
        created = rfc3339()
        config = state.oci_config(created)
        blobs = [(x.blob, x.media_type, x.blob_size) for x in state.layers]
        for x in state.layers:  # a base image's blob is its own; a cached one may be rewritten
            if not self.images.content.exists(x.blob):
                raise BuildError(f"layer blob {x.blob} is missing from the store")
        self.say(f"COMMIT {tags[0] if tags else ''}".rstrip())
        image = self.images.commit(config, blobs, tags[0] if tags else None)
        for tag in tags[1:]:
            self.images.tag(image.id, tag)
        for tag in tags:
            self.say(f"Successfully tagged {tag}")
        return self.images.get(image.id)

    # set by build(); declared for the type checker
    file: Containerfile
    ignore: Ignore
    context: str
    build_args: dict[str, str]
    global_args: dict[str, str]
    no_cache: bool
    steps: int
    cached: int
    _stage_list: list[Stage]


def _find_containerfile(context: Path) -> Path:
    for name in CONTAINERFILES:
        if (context / name).is_file():
            return context / name
    raise UserError(f"{context}: no Containerfile or Dockerfile (give one with -f)")


def _arg_values(
    inst: Instruction, env: dict[str, str], escape: str, build_args: dict[str, str]
) -> list[tuple[str, str | None]]:
    """``ARG a b=1``: each name with its value (``--build-arg`` wins over the default)."""
    out: list[tuple[str, str | None]] = []
    for word in inst.args:
        raw_name, eq, raw_default = word.partition("=")
        name = expand(raw_name, env, escape)
        value: str | None = expand(raw_default, env, escape) if eq else None
        if name in build_args:
            value = build_args[name]
        out.append((name, value))
    return out


def _stage_ref(stages: list[Stage], ref: str) -> Stage | None:
    for stage in stages:
        if stage.name is not None and stage.name == ref.lower():
            return stage
    if ref.isdigit() and int(ref) < len(stages):
        return stages[int(ref)]
    return None


def _port(text: str) -> str:
    port, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise UserError(f"EXPOSE {text}: protocol must be tcp, udp or sctp")
    low, _, high = port.partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        raise UserError(f"EXPOSE {text}: not a port number")
    return f"{port}/{proto}"


_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "h": 3_600_000_000_000}  # fmt: skip


def _duration_ns(text: str, what: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise UserError(f"HEALTHCHECK {what}={text!r}: not a duration (say 30s, 1m30s)")
    return int(sum(float(n) * _UNITS[u] for n, u in parts))


def _file_digest(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
