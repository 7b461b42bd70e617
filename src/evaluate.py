"""Score a generator or a sample file: ``python src/evaluate.py ckpt_path=... n=10000`` (see conf/eval.yaml)."""

import hydra
from omegaconf import DictConfig

from ganzoo.evaluation import evaluate
from ganzoo.pipeline import report_user_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    report_user_errors(evaluate, cfg)


if __name__ == "__main__":
    main()
