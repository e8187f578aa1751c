"""Helm without a helm binary: lint, render and install wharf's chart through the Helm SDK
(PyPI helm-python-sdk, run from the venv that helm-deps.sh creates).

  helm.py lint CHART
  helm.py render CHART --name NAME --namespace NS [--values JSON]   -> one YAML stream on stdout
  helm.py install CHART --name NAME --namespace NS --kubeconfig FILE [--values JSON]
"""
import argparse
import json
import sys

import helm_python as helm


def lint(args):
    result = helm.lint(args.chart)
    for message in result.get("messages", []):
        print(f"{message.get('path')}: {message.get('error')}", file=sys.stderr)
    if result.get("errors"):
        print(f"lint errors: {result['errors']}", file=sys.stderr)
        return 1
    return 0


def render(args):
    config = helm.Config(namespace=args.namespace)
    rendered = config.render(
        helm.Chart.load(args.chart), json.loads(args.values), name=args.name, namespace=args.namespace
    )
    documents = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        text = rendered[path].strip()
        if text:
            documents.append(f"# Source: {path}\n{text}")
    print("\n---\n".join(documents))
    return 0


def install(args):
    config = helm.Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace)
    release = config.install(
        helm.Chart.load(args.chart), args.name, json.loads(args.values), namespace=args.namespace
    )
    print(json.dumps(release, default=str)[:2000])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, handler in (("lint", lint), ("render", render), ("install", install)):
        command = sub.add_parser(name)
        command.add_argument("chart")
        command.set_defaults(handler=handler)
        if name != "lint":
            command.add_argument("--name", required=True)
            command.add_argument("--namespace", required=True)
            command.add_argument("--values", default="{}")
        if name == "install":
            command.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()
    try:
        return args.handler(args)
    except helm.HelmError as err:
        print(f"helm {args.command} failed: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
