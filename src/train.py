"""Train a GAN: ``python src/train.py model=dcgan loss=wgan_gp`` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from ganzoo.pipeline import report_user_errors, train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> dict[str, float]:
    return report_user_errors(train, cfg)


if __name__ == "__main__":
    main()
