"""Features of real data from a trained model: ``python src/features.py ckpt_path=... out=features.npz``."""

import hydra
from omegaconf import DictConfig

from ganzoo.pipeline import features, report_user_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="features")
def main(cfg: DictConfig) -> None:
    report_user_errors(features, cfg)


if __name__ == "__main__":
    main()
