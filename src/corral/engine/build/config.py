"""The image a stage is building, step by step: config fields, layers and history (pure).

A stage starts from its base image's config (or an empty one for ``FROM scratch``) and each
instruction changes it::

    ENV / LABEL / EXPOSE / VOLUME    add to Env, Labels, ExposedPorts, Volumes
    WORKDIR / USER / STOPSIGNAL      set WorkingDir (relative to the previous one), User, ...
    CMD / ENTRYPOINT                 set Cmd / Entrypoint; ENTRYPOINT clears a Cmd that the
                                     stage did not set itself (it came from the base image)
    SHELL                            the shell of later shell-form RUN, CMD, ENTRYPOINT
    HEALTHCHECK / ONBUILD            Healthcheck / OnBuild (recorded, not run)
    RUN / COPY / ADD                 a layer: rootfs.diff_ids + one blob

and every instruction adds one ``history`` entry (``empty_layer`` for those that add no
layer), which is what ``corral history`` prints, one line per step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SHELL = ["/bin/sh", "-c"]


@dataclass(frozen=True)
class LayerBlob:
    """A layer of the image being built: its blob in the content store and what it unpacks to."""

    blob: str
    media_type: str
    blob_size: int
    diff_id: str
    chain_id: str


@dataclass
class ImageState:
    """The image as built so far. ``config`` is the OCI ``config`` object (docker's casing)."""

    config: dict[str, Any] = field(default_factory=dict)
    layers: list[LayerBlob] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    architecture: str = "amd64"
    os: str = "linux"
    base_id: str = ""  # the FROM image's id ("" for scratch)
    cmd_set: bool = False  # a CMD of this stage (ENTRYPOINT keeps it)
    author: str = ""

    @classmethod
    def from_image(cls, image_config: dict[str, Any], layers: list[LayerBlob],
                   base_id: str) -> ImageState:  # fmt: skip
        """The state of ``FROM image``: its config, layers and history, carried on."""
        return cls(
            config=copy.deepcopy(image_config.get("config") or {}),
            layers=list(layers),
            history=copy.deepcopy(list(image_config.get("history") or [])),
            architecture=str(image_config.get("architecture") or "amd64"),
            os=str(image_config.get("os") or "linux"),
            base_id=base_id,
            author=str(image_config.get("author") or ""),
        )

    def copy(self) -> ImageState:
        return ImageState(
            copy.deepcopy(self.config), list(self.layers), copy.deepcopy(self.history),
            self.architecture, self.os, self.base_id, self.cmd_set, self.author,
        )  # fmt: skip

    # -- the fields ---------------------------------------------------------------------------

    @property
    def top_chain(self) -> str | None:
        return self.layers[-1].chain_id if self.layers else None

    @property
    def env(self) -> list[str]:
        return list(self.config.get("Env") or [])

    def env_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def set_env(self, key: str, value: str) -> None:
        """Replace ``key`` in place if present (docker keeps the order), else append."""
        env = self.env
        for i, item in enumerate(env):
            if item.partition("=")[0] == key:
                env[i] = f"{key}={value}"
                break
        else:
            env.append(f"{key}={value}")
        self.config["Env"] = env

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    @property
    def workdir(self) -> str:
        return str(self.config.get("WorkingDir") or "/")

    @property
    def user(self) -> str:
        return str(self.config.get("User") or "")

    def set_map(self, name: str, key: str, value: Any) -> None:
        target = dict(self.config.get(name) or {})
        target[key] = value
        self.config[name] = target

    def add_history(self, created: str, created_by: str, empty: bool, comment: str = "") -> None:
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if comment:
            entry["comment"] = comment
        if empty:
            entry["empty_layer"] = True
        self.history.append(entry)

    # -- the result ---------------------------------------------------------------------------

    def oci_config(self, created: str) -> dict[str, Any]:
        """The OCI image config JSON (its digest becomes the image id)."""
        config = {k: v for k, v in self.config.items() if v not in (None, [], {}, "")}
        return {
            "created": created,
            **({"author": self.author} if self.author else {}),
            "architecture": self.architecture,
            "os": self.os,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in self.layers]},
            "history": self.history,
        }
