"""Inspect and operate the model registry: which version serves, its history, promote by hand, roll back.

    python -m spark_jobs.models status [--model churn]
    python -m spark_jobs.models history --model churn
    python -m spark_jobs.models rollback --model churn [--note "bad scores on 2025-07-01"]
    python -m spark_jobs.models promote --model churn --version 7 --note "approved by ..."

No Spark needed. `c360 models` adds `ensure` (train the models without a champion, as the first night): that is
the pipeline's decision, so it lives in c360.pipeline.modeling, which calls this module and never the other way round. Every alias move is recorded in the deployments audit table (docs/models.md).
"""

from __future__ import annotations

import argparse
import json
import sys

MODELS = ("churn", "clv", "recommender")
ACTIONS = ("status", "history", "rollback", "promote")


def add_arguments(parser: argparse.ArgumentParser, actions: tuple[str, ...] = ACTIONS) -> None:
    parser.add_argument("action", choices=list(actions))
    parser.add_argument("--model", help="registered model name (status: default all three)")
    parser.add_argument("--version", help="promote: the version to make @champion")
    parser.add_argument("--note", help="why (stored in the audit table)")


def run(args: argparse.Namespace) -> int:
    import mlflow

    from c360.config import get_settings
    from ml import registry

    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    audit = registry.DeploymentAudit(settings.deployments_audit_path)
    if args.action == "status":
        for name in [args.model] if args.model else MODELS:
            champion = registry.alias_version(name, registry.CHAMPION)
            challenger = registry.alias_version(name, registry.CHALLENGER)
            print(json.dumps({
                "model": name,
                "champion": None if champion is None else str(champion.version),
                "challenger": None if challenger is None else str(challenger.version),
                "challenger_validation": None if challenger is None else challenger.tags.get("validation_summary"),
            }))
        return 0
    if not args.model:
        print("--model is required for " + args.action, file=sys.stderr)
        return 2
    if args.action == "history":
        for event in audit.history(args.model):
            print(json.dumps(event.__dict__, default=str))
        return 0
    if args.action == "rollback":
        restored = registry.rollback(args.model, note=args.note, audit=audit)
        print(f"{args.model}@champion -> version {restored}")
        return 0
    if not args.version:
        print("--version is required for promote", file=sys.stderr)
        return 2
    previous = registry.promote(args.model, args.version, note=args.note or "manual promotion", audit=audit)
    print(f"{args.model}@champion: {previous or 'none'} -> {args.version}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.models", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
