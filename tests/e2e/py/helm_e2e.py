"""Helm v4 through helm-python-sdk 0.2.2 (Helm's Go SDK behind a C ABI) against a registry on
plain HTTP.

usage: helm_e2e.py HOST:PORT WORKDIR

Creates a small chart, packages two versions, pushes them to oci://HOST/helm, lists tags,
resolves, checks the stored manifest (Helm media types, the chart layer is the .tgz), pulls a
version back and compares the bytes. Exits non-zero on the first failed check.
"""

import hashlib
import json
import os
import sys
import urllib.request

import helm_python as helm

CONFIG_TYPE = "application/vnd.cncf.helm.config.v1+json"
CHART_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

CHART_YAML = """apiVersion: v2
name: e2echart
description: Berth end-to-end test chart
type: application
version: 0.1.0
appVersion: "1.0.0"
"""
VALUES_YAML = "greeting: hello from berth e2e\n"
TEMPLATE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-greeting
data:
  greeting: {{ .Values.greeting | quote }}
"""


def check(cond, msg):
    if not cond:
        print("FAILED:", msg, file=sys.stderr)
        sys.exit(1)


def eq(got, want, what):
    check(got == want, f"{what}: got {got!r}, want {want!r}")


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def get_manifest(host, repo, ref):
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
        eq(r.headers.get("Docker-Content-Digest"), sha256(body), f"digest header of {repo}:{ref}")
        eq(r.headers.get("Content-Type"), OCI_MANIFEST, f"Content-Type of {repo}:{ref}")
        return body


def main():
    host, work = sys.argv[1], sys.argv[2]
    chart = os.path.join(work, "e2echart")
    os.makedirs(os.path.join(chart, "templates"))
    for name, text in [("Chart.yaml", CHART_YAML), ("values.yaml", VALUES_YAML),
                       ("templates/configmap.yaml", TEMPLATE)]:
        with open(os.path.join(chart, name), "w") as f:
            f.write(text)

    dist = os.path.join(work, "dist")
    tgz1 = helm.package(chart, destination=dist)
    tgz2 = helm.package(chart, destination=dist, version="0.2.0")
    eq(os.path.basename(tgz1), "e2echart-0.1.0.tgz", "packaged archive")
    eq(os.path.basename(tgz2), "e2echart-0.2.0.tgz", "packaged archive")

    remote = f"oci://{host}/helm"
    with helm.RegistryClient(plain_http=True, credentials_file=os.path.join(work, "creds.json")) as c:
        for tgz in (tgz1, tgz2):
            res = c.push(tgz, remote, plain_http=True)
            print("push", os.path.basename(tgz), res)
        eq(c.tags(f"{remote}/e2echart"), ["0.2.0", "0.1.0"], "helm tags (newest first)")

        desc = c.resolve(f"{remote}/e2echart:0.1.0")
        raw = get_manifest(host, "helm/e2echart", "0.1.0")
        eq(desc.get("digest"), sha256(raw), "resolve digest")
        eq(desc.get("size"), len(raw), "resolve size")
        m = json.loads(raw)
        eq(m["config"]["mediaType"], CONFIG_TYPE, "config media type")
        eq([l["mediaType"] for l in m["layers"]], [CHART_TYPE], "layer media types")
        eq(m["layers"][0]["digest"], sha256(read(tgz1)), "chart layer is the packaged .tgz")
        eq(m["layers"][0]["size"], len(read(tgz1)), "chart layer size")
        cfg = json.loads(urllib.request.urlopen(
            f"http://{host}/v2/helm/e2echart/blobs/{m['config']['digest']}", timeout=30).read())
        eq((cfg.get("name"), cfg.get("version")), ("e2echart", "0.1.0"), "chart config blob")

        pulled = os.path.join(work, "pulled")
        os.makedirs(pulled)
        print("pull", c.pull(f"{remote}/e2echart", version="0.1.0", destination=pulled, plain_http=True))
        got = read(os.path.join(pulled, "e2echart-0.1.0.tgz"))
        eq(sha256(got), sha256(read(tgz1)), "pulled chart digest")
        check(got == read(tgz1), "pulled chart bytes differ")
        loaded = helm.Chart.load_archive(got)
        eq((loaded.name, loaded.version), ("e2echart", "0.1.0"), "pulled chart metadata")
    print("helm e2e: all checks passed")


if __name__ == "__main__":
    main()
