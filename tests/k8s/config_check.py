#!/usr/bin/env python3
"""Runs `berth config check` on the config.yml a rendered chart (or kustomization) gives Berth.

The environment is the one the Deployment sets: plain values as written, Secret references
resolved from Secrets in the same rendering, or a placeholder of the right shape for Secrets the
user brings (existingSecret). Fails when Berth rejects the configuration or warns about any key
(a warning means Berth ignores something the chart wrote).

usage: config_check.py BERTH_BIN RENDERED.yaml
"""
import base64
import os
import subprocess
import sys
import tempfile

import yaml

PLACEHOLDERS = {
    "REGISTRY_DATABASE_URL": "postgres://berth:placeholder@db.example:5432/berth",
}


def main():
    berth, rendered = sys.argv[1:3]
    docs = [d for d in yaml.safe_load_all(open(rendered, encoding="utf-8")) if d]
    secrets = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "Secret"}
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    if len(deployments) != 1:
        print(f"config_check: want one Deployment, found {len(deployments)}")
        return 1
    pod = deployments[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for e in container.get("env", []):
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref and ref["name"] in secrets:
            env[e["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
        elif ref:
            env[e["name"]] = PLACEHOLDERS.get(e["name"], "placeholder")
        else:
            env[e["name"]] = e.get("value", "")
    # config.yml comes from the ConfigMap volume mounted at the --config path.
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    config = configmaps[volume["configMap"]["name"]]["config.yml"]
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        f.write(config)
        f.flush()
        run = subprocess.run([berth, "config", "check", f.name], env=env, capture_output=True, text=True)
    warnings = [line for line in run.stdout.splitlines() if line.startswith("# warning:")]
    if run.returncode != 0 or warnings:
        print(f"berth config check: exit {run.returncode}")
        for line in warnings + run.stderr.splitlines():
            print("  " + line)
        return 1
    print("  " + " | ".join(line[2:] for line in run.stdout.splitlines()[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
