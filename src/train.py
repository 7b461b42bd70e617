"""Train a GAN: ``python src/train.py model=dcgan loss=wgan_gp`` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from ganzoo.pipeline import report_user_errors, train
from ganzoo.sweeps import objective


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | dict[str, float]:
    # A sweeper (hparams_search=optuna_fid) reads the returned value of cfg.optimized_metric.
    return report_user_errors(lambda c: objective(c, train(c)), cfg)


if __name__ == "__main__":
    main()
