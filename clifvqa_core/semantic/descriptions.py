"""Description sets: the r text prompts CLIP compares every window with (paper sec. 3 and 4.1).

A description is one word or short phrase plus a tag, ``objective`` (a visual quality factor) or
``subjective`` (a feeling the content gives the viewer). Each description is put into every
template of its set ("a {} video frame.", ...); the text embeddings of these prompts are L2-normalised,
averaged and renormalised, giving one text feature per description (the template ensembling of the
CLIP paper, which makes a description less sensitive to the wording of a single prompt).

Choice of words for ``clif-v1`` (objective first, then subjective; the order is the row order of the
semantic maps, ablations select by tag, not by position):

- Objective: the paper probes CLIP with four quality factors, *bright, contrast, noisy, colorful*
  (sec. 3, Fig. 3). We keep those and add the other factors that dominate user-generated-video
  quality studies: sharpness/blur, exposure, compression artefacts (``blocky``), camera shake, and the
  generic ``high-quality``/``low-quality`` pair that CLIP-IQA (Wang et al., the paper's ref. [47])
  found to work best zero-shot.
- Subjective: the paper's four feelings, *interesting, exciting, depressing, fearful* (Fig. 4), plus
  common affect words from the same valence/arousal space (pleasant, joyful, relaxing, tense,
  beautiful, ...).
- Every word comes with an antonym in the set (bright/dark, sharp/blurry, interesting/boring,
  tense/relaxing, ...). The per-window softmax over descriptions turns similarities into a
  distribution; without the opposite pole in the set, "bright" would only compete with unrelated
  words and its probability would say little about brightness. This is CLIP-IQA's antonym idea,
  generalised from one pair to a whole set.
- Single adjectives (or hyphenated compounds) so that every description reads naturally in every
  template. American spelling ("colorful"), as in most of CLIP's training captions.

A set is data: named, versioned, hashed. Changing a word means registering a new name or version;
the content hash goes into the cache key, so features made with other words are never mixed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import ConfigError
from clifvqa_core.registry import Registry

TAGS = ("objective", "subjective")
SELECTIONS = ("all", "objective", "subjective", "none")


@dataclass(frozen=True)
class Description(JsonConfig):
    """One description: ``text`` goes into the templates' ``{}``; ``tag`` is objective|subjective."""

    text: str
    tag: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ConfigError(f"description text must be a non-empty string, got {self.text!r}")
        if self.tag not in TAGS:
            raise ConfigError(f"description {self.text!r}: tag must be one of {TAGS}, got {self.tag!r}")


@dataclass(frozen=True)
class DescriptionSet(JsonConfig):
    """A named, versioned set of r descriptions and the prompt templates they are put into.

    ``texts``/``tags`` are in set order (= row order of the sims' last axis and of the maps).
    ``to_dict()`` also carries ``content_hash``; ``from_dict`` checks it when present.
    """

    name: str
    version: int
    templates: tuple[str, ...]
    descriptions: tuple[Description, ...]

    def __post_init__(self) -> None:
        if not self.templates:
            raise ConfigError(f"description set {self.name!r}: needs at least one template")
        for tpl in self.templates:
            if tpl.count("{}") != 1:
                raise ConfigError(f"description set {self.name!r}: template {tpl!r} must hold exactly one '{{}}'")
        texts = [d.text for d in self.descriptions]
        dupes = sorted({t for t in texts if texts.count(t) > 1})
        if dupes:
            raise ConfigError(f"description set {self.name!r}: duplicate descriptions {dupes}")

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.descriptions]

    @property
    def tags(self) -> list[str]:
        return [d.tag for d in self.descriptions]

    @property
    def r(self) -> int:
        """Number of descriptions."""
        return len(self.descriptions)

    def prompts(self, index: int) -> list[str]:
        """The prompts of description ``index``, one per template."""
        text = self.descriptions[index].text
        return [tpl.format(text) for tpl in self.templates]

    def indices(self, select: str = "all") -> tuple[int, ...]:
        """Positions (in set order) of the selected descriptions.

        ``select`` is "all" | "objective" | "subjective" | "none" (empty tuple: the "None" row of the
        paper's Table 4), or a comma-separated list of description texts ("bright,dark").
        """
        key = select.strip().lower()
        if key == "all":
            return tuple(range(self.r))
        if key == "none":
            return ()
        if key in TAGS:
            return tuple(i for i, d in enumerate(self.descriptions) if d.tag == key)
        wanted = [w.strip() for w in select.split(",") if w.strip()]
        lookup = {d.text: i for i, d in enumerate(self.descriptions)}
        missing = [w for w in wanted if w not in lookup]
        if missing or not wanted:
            raise ConfigError(
                f"description selection {select!r}: use one of {', '.join(SELECTIONS)} or a comma-separated "
                f"list of texts of set {self.name!r}" + (f"; not in the set: {missing}" if missing else "")
            )
        return tuple(lookup[w] for w in wanted)

    def subset(self, select: str) -> "DescriptionSet":
        """A new set holding only the selected descriptions (same templates; name gets the selection)."""
        idx = self.indices(select)
        return dataclasses.replace(
            self, name=f"{self.name}[{select}]", descriptions=tuple(self.descriptions[i] for i in idx)
        )

    def _fields_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "templates": list(self.templates),
            "descriptions": [{"text": d.text, "tag": d.tag} for d in self.descriptions],
        }

    def content_hash(self, length: int = 16) -> str:
        """sha256 (hex, first ``length`` chars) over name, version, templates, texts and tags."""
        canon = json.dumps(self._fields_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:length]

    def to_dict(self) -> dict[str, Any]:
        out = self._fields_dict()
        out["content_hash"] = self.content_hash()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], _where: str | None = None) -> "DescriptionSet":
        if isinstance(data, dict) and "content_hash" in data:
            data = dict(data)
            claimed = data.pop("content_hash")
            obj = super().from_dict(data, _where=_where)
            if claimed != obj.content_hash(len(str(claimed))):
                raise ConfigError(
                    f"{_where or cls.__name__}: content_hash {claimed!r} does not match the descriptions "
                    f"({obj.content_hash()!r}); the texts were edited"
                )
            return obj
        return super().from_dict(data, _where=_where)


DESCRIPTION_SETS: Registry[DescriptionSet] = Registry("description set")


def _make_set(name: str, version: int, templates: tuple[str, ...], objective: tuple[str, ...],
              subjective: tuple[str, ...]) -> DescriptionSet:
    descs = tuple(Description(t, "objective") for t in objective) + tuple(
        Description(t, "subjective") for t in subjective
    )
    return DescriptionSet(name=name, version=version, templates=templates, descriptions=descs)


CLIF_V1 = _make_set(
    "clif-v1",
    1,
    templates=(
        "a {} video frame.",
        "a photo that looks {}.",
        "a {} image.",
        "a frame of a {} video.",
    ),
    # antonym pairs side by side
    objective=(
        "bright", "dark",
        "high-contrast", "low-contrast",
        "noisy", "clean",
        "colorful", "colorless",
        "sharp", "blurry",
        "overexposed", "underexposed",
        "blocky", "smooth",
        "shaky", "steady",
        "high-quality", "low-quality",
    ),
    subjective=(
        "interesting", "boring",
        "exciting", "calm",
        "pleasant", "unpleasant",
        "joyful", "depressing",
        "fearful", "peaceful",
        "tense", "relaxing",
        "beautiful", "ugly",
    ),
)
DESCRIPTION_SETS.add("clif-v1", CLIF_V1)


def get_description_set(name: str) -> DescriptionSet:
    """``DESCRIPTION_SETS[name]`` with a :class:`ConfigError` (a user error) instead of ``KeyError``."""
    try:
        return DESCRIPTION_SETS[name]
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
