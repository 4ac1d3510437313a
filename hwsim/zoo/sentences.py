"""English sentences generated from a small seeded grammar (no downloads, same list every run).

Sentences mix topics (people, animals, weather, science, computing, cooking, travel, sport), so
their embeddings spread over the space; short and long forms vary the token count (8 to ~30).
"""

from __future__ import annotations

import numpy as np

_SUBJECTS = ("the old fisherman", "a young engineer", "my grandmother", "the small brown dog",
             "a team of students", "the city council", "an orange cat", "the night nurse",
             "our neighbour", "the violinist", "a tired traveller", "the research group",
             "the farmer", "a curious child", "the pilot", "the chef")
_VERBS = ("repaired", "painted", "watched", "studied", "carried", "described", "ignored",
          "measured", "cooked", "photographed", "sold", "cleaned", "discovered", "designed",
          "borrowed", "explained")
_OBJECTS = ("a wooden boat", "the broken bicycle", "an ancient map", "the new bridge",
            "a bowl of soup", "the storm clouds", "a neural network", "the chess board",
            "a stack of letters", "the mountain trail", "the red kite", "a cup of tea",
            "the train timetable", "a rare orchid", "the solar panels", "the football match")
_PLACES = ("near the harbour", "in the morning", "after the long winter", "at the market",
           "during the concert", "behind the station", "under the bright lights",
           "on a rainy afternoon", "in the laboratory", "before dinner", "at the airport",
           "in a quiet village")
_REASONS = ("because it was important", "although nobody asked", "for the first time",
            "with great care", "without saying a word", "while the others slept",
            "to win a small prize", "as the sun went down")
_FACTS = ("Water boils at one hundred degrees at sea level.",
          "The stock market fell sharply on Monday.",
          "Integer arithmetic on accelerators saves energy.",
          "Heavy rain is expected across the north tomorrow.",
          "The museum opens at nine and closes at five.",
          "Quantized networks run faster on small devices.",
          "The recipe needs two eggs and a cup of flour.",
          "The goalkeeper saved a penalty in the final minute.",
          "Light travels faster than sound.",
          "The new phone has a larger battery.")


def sentences(n: int = 300, seed: int = 0) -> list[str]:
    """``n`` sentences, deterministic for a given ``seed``: every tenth is a fixed fact, the
    rest subject-verb-object sentences with optional place and reason phrases."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % 10 == 9:
            out.append(_FACTS[(i // 10) % len(_FACTS)])
            continue
        words = [_SUBJECTS[rng.integers(len(_SUBJECTS))], _VERBS[rng.integers(len(_VERBS))],
                 _OBJECTS[rng.integers(len(_OBJECTS))]]
        if rng.random() < 0.6:
            words.append(_PLACES[rng.integers(len(_PLACES))])
        if rng.random() < 0.4:
            words.append(_REASONS[rng.integers(len(_REASONS))])
        text = " ".join(words)
        out.append(text[0].upper() + text[1:] + ".")
    return out
