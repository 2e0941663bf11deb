"""ORAS Python SDK (oras 0.2.43) and Helm v4 (helm-python-sdk 0.2.2) against a registry with
authentication, on plain HTTP.

usage: auth_e2e.py HOST:PORT WORKDIR USER PASSWORD REPO_PREFIX

ORAS logs in as USER (basic auth backend), pushes an artifact to REPO_PREFIX/oras:v1, pulls it
back and byte-compares. Helm logs in, pushes a chart to oci://HOST/REPO_PREFIX/helm, lists tags and pulls it back;
a login with a wrong password must fail. Exits non-zero on the first failed check.
"""

import os
import sys

import helm_python as helm
import oras.client

CHART_YAML = """apiVersion: v2
name: authchart
description: Berth auth end-to-end chart
type: application
version: 0.1.0
"""


def check(cond, msg):
    if not cond:
        print("FAILED:", msg, file=sys.stderr)
        sys.exit(1)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def oras_checks(host, work, user, password, prefix):
    src = os.path.join(work, "oras-in")
    os.makedirs(src)
    payload = os.urandom(1024 * 1024)
    with open(os.path.join(src, "payload.bin"), "wb") as f:
        f.write(payload)
    target = f"{host}/{prefix}/oras:v1"

    # (No anonymous push here: the SDK retries a 401 with backoff for minutes. skopeo and the
    # router tests cover refused pushes.)
    os.chdir(src)
    c = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
    c.login(username=user, password=password, hostname=host,
            config_path=os.path.join(work, "oras-config.json"))
    r = c.push(target=target, files=["payload.bin"])
    check(r.status_code == 201, f"ORAS push: {r.status_code}")
    os.chdir(work)
    files = c.pull(target=target, outdir="oras-out")
    check(len(files) == 1, f"ORAS pulled {files}")
    check(read(os.path.join(work, "oras-out", "payload.bin")) == payload, "ORAS payload bytes differ")
    check(c.get_tags(f"{host}/{prefix}/oras") == ["v1"], "ORAS tags")
    print("oras: ok")


def helm_checks(host, work, user, password, prefix):
    chart = os.path.join(work, "authchart")
    os.makedirs(os.path.join(chart, "templates"))
    with open(os.path.join(chart, "Chart.yaml"), "w") as f:
        f.write(CHART_YAML)
    tgz = helm.package(chart, destination=os.path.join(work, "dist"))
    remote = f"oci://{host}/{prefix}/helm"
    with helm.RegistryClient(plain_http=True, credentials_file=os.path.join(work, "bad.json")) as c:
        try:
            c.login(host, user, password + "-wrong", plain_http=True)
            check(False, "helm login with a wrong password succeeded")
        except Exception as e:
            print("helm wrong password refused:", type(e).__name__)
    with helm.RegistryClient(plain_http=True, credentials_file=os.path.join(work, "creds.json")) as c:
        c.login(host, user, password, plain_http=True)
        print("helm push", c.push(tgz, remote, plain_http=True))
        check(c.tags(f"{remote}/authchart") == ["0.1.0"], "helm tags")
        pulled = os.path.join(work, "pulled")
        os.makedirs(pulled)
        c.pull(f"{remote}/authchart", version="0.1.0", destination=pulled, plain_http=True)
        check(read(os.path.join(pulled, "authchart-0.1.0.tgz")) == read(tgz), "helm chart bytes differ")
    print("helm: ok")


def main():
    host, work, user, password, prefix = sys.argv[1:6]
    oras_checks(host, work, user, password, prefix)
    helm_checks(host, work, user, password, prefix)
    print("auth e2e: all checks passed")


if __name__ == "__main__":
    main()
