"""ORAS Python SDK (oras 0.2.43) end-to-end checks against a registry on plain HTTP.

usage: oras_e2e.py HOST:PORT WORKDIR --referrers yes|no

Pushes an OCI artifact with a top-level artifactType (several files, one of 20 MiB, and a
directory), a chunked push, pulls and byte-compares, pushes two referrers with `subject`, and
checks the referrers API (listing, artifactType filtering, OCI-Subject header) when
`--referrers yes`. Deletes a tag at the end. Exits non-zero on the first failed check.
"""

import argparse
import hashlib
import json
import os
import sys
import urllib.parse

import oras.client
import oras.defaults
import oras.oci

MANIFEST = oras.defaults.default_manifest_media_type
INDEX = oras.defaults.default_index_media_type
BUNDLE_TYPE = "application/vnd.berth.e2e.bundle.v1"
SIG_TYPE = "application/vnd.berth.e2e.signature.v1+json"
SBOM_TYPE = "application/vnd.berth.e2e.sbom.v1+json"


class Client(oras.client.OrasClient):
    """OrasClient that can set the OCI 1.1 top-level `artifactType` of pushed manifests
    (the SDK has no parameter for it)."""

    artifact_type = None

    def upload_manifest(self, manifest, container):
        if self.artifact_type:
            manifest = dict(manifest, artifactType=self.artifact_type)
        return super().upload_manifest(manifest, container)

    def push_typed(self, artifact_type, **kwargs):
        self.artifact_type = artifact_type
        try:
            return self.push(**kwargs)
        finally:
            self.artifact_type = None


def check(cond, msg):
    if not cond:
        print("FAILED:", msg, file=sys.stderr)
        sys.exit(1)


def eq(got, want, what):
    check(got == want, f"{what}: got {got!r}, want {want!r}")


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def raw_manifest(client, host, repo, ref):
    """GET the manifest bytes exactly as served (never re-serialised)."""
    r = client.do_request(f"http://{host}/v2/{repo}/manifests/{ref}", "GET", headers={"Accept": MANIFEST})
    eq(r.status_code, 200, f"GET manifest {repo}:{ref}")
    eq(r.headers.get("Docker-Content-Digest"), sha256(r.content), f"digest header of {repo}:{ref}")
    return r.content


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("workdir")
    ap.add_argument("--referrers", choices=["yes", "no"], required=True)
    args = ap.parse_args()
    host, repo = args.host, "oras/art"
    c = Client(hostname=host, insecure=True)

    src = os.path.join(args.workdir, "in")
    files = {
        "readme.txt": b"hello oras from berth e2e\n",
        "big.bin": os.urandom(20 * 1024 * 1024),
        "bundle/a.json": json.dumps({"k": "v"}).encode(),
        "bundle/sub/b.txt": b"nested file\n",
        "chunked.bin": os.urandom(17 * 1024 * 1024 + 123),
        "sig.json": b'{"signature":"not really"}',
        "sbom.json": b'{"sbom":"nothing inside"}',
    }
    for name, data in files.items():
        write(os.path.join(src, name), data)
    os.chdir(src)  # the SDK insists that pushed paths are relative to the working directory

    # 1. An artifact with artifactType, several files (one of 20 MiB, one a directory).
    r = c.push_typed(BUNDLE_TYPE, target=f"{host}/{repo}:v1",
                     files=["readme.txt:text/plain", "big.bin", "bundle"],
                     manifest_annotations={"org.opencontainers.image.title": "e2e bundle"})
    eq(r.status_code, 201, "push v1")
    raw = raw_manifest(c, host, repo, "v1")
    eq(r.headers.get("Docker-Content-Digest"), sha256(raw), "push response digest")
    m = json.loads(raw)
    eq(m.get("artifactType"), BUNDLE_TYPE, "artifactType stored")
    eq([l["annotations"]["org.opencontainers.image.title"] for l in m["layers"]],
       ["readme.txt", "big.bin", "bundle"], "layer titles")
    eq(m["layers"][1]["digest"], sha256(files["big.bin"]), "big.bin layer digest")

    # 2. A chunked push (POST, several PATCHes of 8 MiB, PUT).
    r = c.push(target=f"{host}/{repo}:chunked", files=["chunked.bin"], do_chunked=True, chunk_size=8 * 1024 * 1024)
    eq(r.status_code, 201, "chunked push")

    # 3. Pull both back and compare bytes.
    out = os.path.join(args.workdir, "out")
    pulled = c.pull(target=f"{host}/{repo}:v1", outdir=out)
    eq(sorted(os.path.relpath(p, out) for p in pulled), ["big.bin", "bundle", "readme.txt"], "pulled files")
    for name in ["readme.txt", "big.bin", "bundle/a.json", "bundle/sub/b.txt"]:
        check(read(os.path.join(out, name)) == files[name], f"pulled {name} differs")
    c.pull(target=f"{host}/{repo}:chunked", outdir=out)
    check(read(os.path.join(out, "chunked.bin")) == files["chunked.bin"], "pulled chunked.bin differs")

    # 4. Referrers: subject built from the RAW manifest bytes (Subject.from_manifest re-serialises).
    subject = oras.oci.Subject(mediaType=MANIFEST, digest=sha256(raw), size=len(raw))
    refs = {}
    for tag, atype, f in [("sig", SIG_TYPE, "sig.json"), ("sbom", SBOM_TYPE, "sbom.json")]:
        r = c.push_typed(atype, target=f"{host}/{repo}:{tag}", files=[f"{f}:{atype}"], subject=subject)
        eq(r.status_code, 201, f"push referrer {tag}")
        if args.referrers == "yes":
            eq(r.headers.get("OCI-Subject"), subject.digest, f"OCI-Subject header on {tag} push")
        body = raw_manifest(c, host, repo, tag)
        eq(json.loads(body).get("subject"), {"mediaType": MANIFEST, "digest": subject.digest, "size": subject.size},
           f"subject of {tag}")
        refs[atype] = {"digest": sha256(body), "size": len(body)}

    url = f"http://{host}/v2/{repo}/referrers/{subject.digest}"
    if args.referrers == "yes":
        r = c.do_request(url, "GET")
        eq(r.status_code, 200, "GET referrers")
        check(r.headers.get("Content-Type", "").startswith(INDEX), f"referrers Content-Type {r.headers}")
        idx = r.json()
        eq(idx.get("mediaType"), INDEX, "referrers index mediaType")
        got = {d["artifactType"]: {"digest": d["digest"], "size": d["size"], "mediaType": d["mediaType"]}
               for d in idx["manifests"]}
        eq(got, {t: dict(v, mediaType=MANIFEST) for t, v in refs.items()}, "referrers listing")

        # Percent-encoded as real clients do ('+' in a query string would read as a space).
        r = c.do_request(url + "?artifactType=" + urllib.parse.quote(SIG_TYPE, safe=""), "GET")
        eq(r.status_code, 200, "GET referrers?artifactType")
        eq(r.headers.get("OCI-Filters-Applied"), "artifactType", "OCI-Filters-Applied header")
        eq([(d["artifactType"], d["digest"]) for d in r.json()["manifests"]], [(SIG_TYPE, refs[SIG_TYPE]["digest"])],
           "filtered referrers")

        # A subject without referrers gives an empty index, not a 404.
        r = c.do_request(f"http://{host}/v2/{repo}/referrers/{sha256(b'nothing')}", "GET")
        eq(r.status_code, 200, "GET referrers of an unknown digest")
        eq(r.json().get("manifests"), [], "empty referrers index")
    else:
        print("target without the OCI 1.1 referrers API: referrers listing not checked")

    # 5. Tags, delete_tags (HEAD then DELETE by digest), tags again.
    eq(sorted(c.get_tags(f"{host}/{repo}")), ["chunked", "sbom", "sig", "v1"], "tags")
    eq(c.delete_tags(f"{host}/{repo}", ["chunked"]), ["chunked"], "delete_tags result")
    eq(sorted(c.get_tags(f"{host}/{repo}")), ["sbom", "sig", "v1"], "tags after delete")
    r = c.do_request(f"http://{host}/v2/{repo}/manifests/chunked", "GET", headers={"Accept": MANIFEST})
    eq(r.status_code, 404, "deleted tag")
    print("oras e2e: all checks passed")


if __name__ == "__main__":
    main()
