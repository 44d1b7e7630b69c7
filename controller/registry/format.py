"""The block artifact format: media types and labels, as Polycrate pushes blocks.

Polycrate (``polycrate blocks push``, go-containerregistry's ``crane``) wraps a block directory
as an ordinary image: its configurable base image (a scratch image by default) with one gzip
tar layer of the block directory appended (``mutate.AppendLayers``), the block's labels plus
``polycrate.block.version`` in the image config, pushed as ``:<version>`` and ``:latest``.
Pulling flattens every layer in order into the block directory. docs/block-artifacts.md
describes the layout in full.
"""

from __future__ import annotations

from typing import Final

# What cratekeeper pushes: the Docker image manifest v2 schema 2 types, the types
# go-containerregistry writes for an image built on a scratch base (what Polycrate pushes).
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# Also accepted when pulling: the same image written with OCI media types.
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR: Final = "application/vnd.oci.image.layer.v1.tar"

# Answers a block reference must never resolve to (a multi-platform image is not a block).
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"

MANIFEST_TYPES: Final = (DOCKER_MANIFEST, OCI_MANIFEST)
CONFIG_TYPES: Final = (DOCKER_CONFIG, OCI_CONFIG)
GZIP_LAYER_TYPES: Final = (DOCKER_LAYER_GZIP, OCI_LAYER_GZIP)
LAYER_TYPES: Final = (*GZIP_LAYER_TYPES, OCI_LAYER_TAR)

# Config labels. The version and checksum labels are Polycrate's own; the others are
# cratekeeper's additions (Polycrate ignores labels it does not know).
LABEL_VERSION: Final = "polycrate.block.version"
LABEL_POLYCRATE_CHECKSUM: Final = "polycrate.blocks.checksum"  # hashdir MD5 of the block dir
LABEL_POLYCRATE_CHECKSUM_ALGO: Final = "polycrate.blocks.checksum_algo"  # "md5"
LABEL_NAME: Final = "dev.cratekeeper.block.name"
LABEL_CHECKSUM: Final = "dev.cratekeeper.block.checksum"  # sha256 of the block layer's tar

# A base image plus the block layer is two; a few more are tolerated (base images with layers
# of their own), an image of dozens of layers is not a block.
MAX_LAYERS: Final = 16

BLOCK_FILE: Final = "block.poly"
LATEST: Final = "latest"

# Upper bounds for the small JSON documents; a registry answering more is not serving a block.
MAX_MANIFEST_SIZE: Final = 4 * 1024 * 1024
MAX_CONFIG_SIZE: Final = 4 * 1024 * 1024
