"""Sample a trained generator: ``python src/sample.py ckpt_path=... n=10000 out=samples.npz``."""

import hydra
from omegaconf import DictConfig

from ganzoo.pipeline import report_user_errors, sample


@hydra.main(version_base="1.3", config_path="../conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    report_user_errors(sample, cfg)


if __name__ == "__main__":
    main()
