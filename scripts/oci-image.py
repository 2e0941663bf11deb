#!/usr/bin/env python3
"""Writes a one-layer OCI image (an OCI image-layout tarball, "oci-archive") from a rootfs directory.

No daemon, no dependencies beyond Python's standard library, and reproducible: file order is sorted,
owners and modes come from the command line or the directory, and every timestamp is --epoch. The
tarball loads with `ctr images import`, `skopeo copy oci-archive:FILE ...` and `podman load`.

usage: oci-image.py --rootfs DIR --name REPO:TAG --out FILE.tar [--owner PATH=UID:GID ...]
                    [--label K=V ...] [--env K=V ...] [--entrypoint JSON] [--cmd JSON]
                    [--user UID:GID] [--workdir DIR] [--port 5000/tcp ...] [--epoch SECONDS]
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import time


def layer_tar(rootfs, owners, epoch):
    """Uncompressed tar of rootfs: sorted, numeric owners (root unless --owner says otherwise)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = os.path.join(dirpath, name)
                arc = os.path.relpath(path, rootfs)
                info = tar.gettarinfo(path, arc)
                info.uid, info.gid = owners.get(arc, (0, 0))
                info.uname = info.gname = ""
                info.mtime = epoch
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return digest, data


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--name", required=True, help="full reference, e.g. localhost/berth:0.1.0")
    ap.add_argument("--out", required=True)
    ap.add_argument("--owner", action="append", default=[], help="PATH=UID:GID (path relative to rootfs)")
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--entrypoint", default="[]")
    ap.add_argument("--cmd", default="[]")
    ap.add_argument("--user", default="")
    ap.add_argument("--workdir", default="")
    ap.add_argument("--port", action="append", default=[])
    ap.add_argument("--epoch", type=int, default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    a = ap.parse_args()

    owners = {}
    for o in a.owner:
        path, ids = o.split("=", 1)
        uid, gid = ids.split(":")
        owners[path.strip("/")] = (int(uid), int(gid))
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.epoch))

    raw = layer_tar(a.rootfs, owners, a.epoch)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", compresslevel=9, mtime=a.epoch) as z:
        z.write(raw)
    layer_digest, layer = blob(gz.getvalue())
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()

    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": a.user,
            "Env": a.env,
            "Entrypoint": json.loads(a.entrypoint),
            "Cmd": json.loads(a.cmd),
            "WorkingDir": a.workdir,
            "ExposedPorts": {p: {} for p in a.port},
            "Labels": dict(label.split("=", 1) for label in a.label),
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "scripts/oci-image.py"}],
    }
    config_digest, config_bytes = blob(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": len(layer)}],
        "annotations": config["config"]["Labels"],
    }
    manifest_digest, manifest_bytes = blob(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": len(manifest_bytes),
            "platform": {"architecture": "amd64", "os": "linux"},
            # containerd (ctr import) reads the full name; skopeo/podman read ref.name.
            "annotations": {"io.containerd.image.name": a.name, "org.opencontainers.image.ref.name": tag},
        }],
    }
    entries = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
               ("index.json", json.dumps(index, sort_keys=True).encode())]
    for digest, data in ((layer_digest, layer), (config_digest, config_bytes), (manifest_digest, manifest_bytes)):
        entries.append(("blobs/sha256/" + digest.split(":", 1)[1], data))
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, a.epoch
            out.addfile(info)
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, a.epoch
            out.addfile(info, io.BytesIO(data))
    os.replace(tmp, a.out)
    print(f"{a.out}: {a.name} manifest {manifest_digest} ({len(layer)} bytes compressed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
