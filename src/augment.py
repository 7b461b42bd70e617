"""The augmentation study: ``python src/augment.py ckpt_path=<conditional generator> [labelled=[100,1000]]``.

Writes the JSON of every (N, seed, arm) accuracy to ``out`` and the ``section`` of ``results_md`` (one section
per generator: ``section=augment_fair`` keeps a second study beside the first).
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from ganzoo.augment import run, section_lines
from ganzoo.pipeline import report_user_errors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from report import machine, write_section  # noqa: E402  (bench/ is scripts, not a package)


def study_and_report(cfg: DictConfig) -> dict:
    result = run(cfg)
    if cfg.results_md:
        write_section(cfg.section, section_lines(result, machine()), ROOT / cfg.results_md)
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="augment")
def main(cfg: DictConfig) -> None:
    report_user_errors(study_and_report, cfg)


if __name__ == "__main__":
    main()
