"""The router's intent model on its written held-out sets (never trained on; issue 20 and 23).

One JSON line per figure (bench/common.py): out-of-scope recall and the share of out-of-scope texts a
tier would act on as a money-moving intent, per set (targets: recall >= 0.95, money <= 0.5%); accuracy on
the product asks (team_member, api_key, account_access) and the share of them acted on as billing; per
language accuracy. Reads the trained artefact (``tierline train-intents``); embeds ~700 texts.
Run: .venv/bin/python -m bench.bench_intent_heldout
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import figure  # noqa: E402
from services.router.intent.dataset import (  # noqa: E402
    OOS_HELDOUT2_PATH,
    OOS_HELDOUT3_PATH,
    OOS_HELDOUT_PATH,
)
from services.router.intent.model import (  # noqa: E402
    IntentClassifier,
    IntentModelError,
    evaluate_languages,
    evaluate_out_of_scope,
    evaluate_product,
)

OOS_SETS = {
    "oos_heldout": OOS_HELDOUT_PATH,
    "oos_heldout2": OOS_HELDOUT2_PATH,
    "oos_heldout3": OOS_HELDOUT3_PATH,
}


def main() -> int:
    try:
        classifier = IntentClassifier.load()
    except IntentModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, path in OOS_SETS.items():
        metrics = evaluate_out_of_scope(classifier, path)
        if metrics is None:
            continue
        figure(f"{name} out_of_scope recall", metrics.recall, "share", target=0.95, n=metrics.n)
        figure(
            f"{name} out-of-scope acted on as money",
            metrics.acted_money,
            "share",
            higher_is_better=False,
            target=0.005,
            n=metrics.n,
        )
    product = evaluate_product(classifier)
    if product is not None:
        figure("product_heldout accuracy", product.accuracy, "share", n=product.n)
        figure(
            "product asks acted on as billing",
            product.product_read_as_billing,
            "share",
            higher_is_better=False,
            target=0.0,
        )
    for language, lang in evaluate_languages(classifier).items():
        figure(f"multilingual_heldout {language} accuracy", lang.accuracy, "share", n=lang.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
