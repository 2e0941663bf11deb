"""ORAS Python SDK (oras 0.2.43) and Helm v4 (helm-python-sdk 0.2.2) against a registry with
authentication, on plain HTTP or HTTPS.

usage: auth_e2e.py HOST:PORT WORKDIR USER PASSWORD REPO_PREFIX [CA_CERT]

With CA_CERT the registry speaks HTTPS and both SDKs trust that CA (ORAS: tls_verify; Helm:
SSL_CERT_FILE, set before Helm's Go runtime loads).

ORAS logs in as USER (basic auth backend), pushes an artifact to REPO_PREFIX/oras:v1, pulls it
back and byte-compares. Helm logs in, pushes a chart to oci://HOST/REPO_PREFIX/helm, lists tags and pulls it back;
a login with a wrong password must fail. Exits non-zero on the first failed check.
"""

import os
import sys

import base64

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


def oras_checks(host, work, user, password, prefix, ca):
    src = os.path.join(work, "oras-in")
    os.makedirs(src)
    payload = os.urandom(1024 * 1024)
    with open(os.path.join(src, "payload.bin"), "wb") as f:
        f.write(payload)
    target = f"{host}/{prefix}/oras:v1"

    # (No anonymous push here: the SDK retries a 401 with backoff for minutes. skopeo and the
    # router tests cover refused pushes.)
    os.chdir(src)
    if ca:
        c = oras.client.OrasClient(hostname=host, tls_verify=ca, auth_backend="basic")
        c.auth.set_basic_auth(user, password)
        # The SDK sends every request without credentials first; over TLS the 401 to a PUT with
        # a body ends in SSLEOFError (COOKBOOK §4), so send them up front.
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        c.set_header("Authorization", "Basic " + token)
    else:
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


def helm_checks(host, work, user, password, prefix, ca):
    import helm_python as helm  # after SSL_CERT_FILE is set

    plain = not ca
    chart = os.path.join(work, "authchart")
    os.makedirs(os.path.join(chart, "templates"))
    with open(os.path.join(chart, "Chart.yaml"), "w") as f:
        f.write(CHART_YAML)
    tgz = helm.package(chart, destination=os.path.join(work, "dist"))
    remote = f"oci://{host}/{prefix}/helm"
    with helm.RegistryClient(plain_http=plain, credentials_file=os.path.join(work, "bad.json")) as c:
        try:
            c.login(host, user, password + "-wrong", plain_http=plain)
            check(False, "helm login with a wrong password succeeded")
        except Exception as e:
            print("helm wrong password refused:", type(e).__name__)
    with helm.RegistryClient(plain_http=plain, credentials_file=os.path.join(work, "creds.json")) as c:
        c.login(host, user, password, plain_http=plain)
        print("helm push", c.push(tgz, remote, plain_http=plain))
        check(c.tags(f"{remote}/authchart") == ["0.1.0"], "helm tags")
        pulled = os.path.join(work, "pulled")
        os.makedirs(pulled)
        c.pull(f"{remote}/authchart", version="0.1.0", destination=pulled, plain_http=plain)
        check(read(os.path.join(pulled, "authchart-0.1.0.tgz")) == read(tgz), "helm chart bytes differ")
    print("helm: ok")


def main():
    host, work, user, password, prefix = sys.argv[1:6]
    ca = sys.argv[6] if len(sys.argv) > 6 else None
    if ca:
        os.environ["SSL_CERT_FILE"] = ca
    oras_checks(host, work, user, password, prefix, ca)
    helm_checks(host, work, user, password, prefix, ca)
    print("auth e2e: all checks passed")


if __name__ == "__main__":
    main()
