"""The paper's published numbers of Tables 1 and 2 (CLiF-VQA, CLiF-VQA*, FAST-VQA), transcribed once.

Source: ``../shared/paper/clif-vqa.txt`` (Table 1: pre-trained on LSVQ, intra-dataset LSVQ_test /
LSVQ_1080p, cross-dataset KoNViD-1k / LIVE-VQC; Table 2: fine-tuned on LIVE-VQC, KoNViD-1k, YouTube-UGC,
10 train-test splits). ``tests/test_reproduce.py`` reads these numbers back out of the paper's text, so a
slip in the transcription fails there.
"""
from __future__ import annotations

__all__ = ["PAPER", "TABLE1_COLUMNS", "TABLE2_COLUMNS", "ROW_LABELS", "METRICS"]

#: metrics the paper reports, in its column order
METRICS = ("srocc", "plcc")
#: Table 1 test sets in the paper's column order: (column key, heading, dataset, part)
TABLE1_COLUMNS = (("lsvq_test", "LSVQ_test", "lsvq", "test"), ("lsvq_1080p", "LSVQ_1080p", "lsvq", "test_1080p"),
                  ("konvid1k", "KoNViD-1k", "konvid1k", "all"), ("livevqc", "LIVE-VQC", "livevqc", "all"))
#: Table 2 fine-tuning sets in the paper's column order: (column key, heading, dataset, part)
TABLE2_COLUMNS = (("livevqc", "LIVE-VQC", "livevqc", "test"), ("konvid1k", "KoNViD-1k", "konvid1k", "test"),
                  ("youtubeugc", "YouTube-UGC", "youtubeugc", "test"))
#: our row key -> the paper's method name
ROW_LABELS = {"clifvqa": "CLiF-VQA", "clifvqa_star": "CLiF-VQA*", "fastvqa": "FAST-VQA"}

#: table -> row key -> column key -> (SROCC, PLCC), as printed in the paper
PAPER: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "table1": {
        "clifvqa": {"lsvq_test": (0.882, 0.882), "lsvq_1080p": (0.788, 0.830), "konvid1k": (0.870, 0.866),
                    "livevqc": (0.835, 0.856)},
        "fastvqa": {"lsvq_test": (0.872, 0.874), "lsvq_1080p": (0.770, 0.809), "konvid1k": (0.864, 0.862),
                    "livevqc": (0.824, 0.841)},
    },
    "table2": {
        "clifvqa": {"livevqc": (0.864, 0.880), "konvid1k": (0.902, 0.903), "youtubeugc": (0.888, 0.891)},
        "clifvqa_star": {"livevqc": (0.856, 0.860), "konvid1k": (0.894, 0.895), "youtubeugc": (0.868, 0.870)},
        "fastvqa": {"livevqc": (0.845, 0.852), "konvid1k": (0.890, 0.889), "youtubeugc": (0.857, 0.853)},
    },
}
