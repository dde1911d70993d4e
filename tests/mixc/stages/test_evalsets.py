"""Eval files read, checked and given choices (`eval_items`), and the framing of `eval_encode`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixc.stages.base import StageError, Stats
from mixc.stages.evalsets import Frames, read_items, with_choices

LINES = [
    {"id": "a", "question": "What is the capital of Chad?", "answer": "N'Djamena", "topic": "geography"},
    {"question": "Which gas do plants take in?", "choices": ["oxygen", "carbon dioxide", "helium", "argon"],
     "answer": 1, "audio": "q.wav"},
    {"question": "who plays ken barlow?", "answers": ["William Roache"], "url": "http://www.freebase.com/x"},
    {"question": "Which Lloyd Webber musical features Joseph?", "question_id": "tc_1",
     "answer": {"value": "Joseph and the Amazing Technicolor Dreamcoat", "aliases": ["Joseph"]}},
    {"question": "  ", "answer": "x"},                                             # empty question
    {"question": "Q without answer?"},                                            # no answer
    {"question": "Q?", "choices": ["a", "", "c", "d"], "answer": 0},             # wrong number of choices
    {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 4},            # answer out of range
    {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 0, "audio": "absent.wav"},  # missing audio
    {"id": "a", "question": "Again?", "answer": "y"},                             # duplicate id
    {"question": "Three choices?", "choices": ["a", "b", "c"], "answer": 0},     # not the set's 4
]


@pytest.fixture
def eval_file(tmp_path: Path) -> Path:
    (tmp_path / "q.wav").write_bytes(b"RIFF")
    text = "\n".join(json.dumps(line) for line in LINES[:4]) + "\nnot json at all\n[1, 2]\n" + \
        "\n".join(json.dumps(line) for line in LINES[4:]) + "\n"
    (tmp_path / "set.jsonl").write_text(text)
    return tmp_path / "set.jsonl"


def test_every_layout_is_read_and_every_bad_line_dropped_with_its_place(eval_file, tmp_path):
    stats = Stats()
    items = read_items(tmp_path, [eval_file], "auto", stats)
    assert [i.question for i in items][:4] == [LINES[0]["question"], LINES[1]["question"], LINES[2]["question"],
                                                LINES[3]["question"]]
    assert items[2].answer == "William Roache" and items[3].answer.startswith("Joseph and")
    assert items[3].id == "tc_1" and items[1].audio == str(tmp_path / "q.wav") and items[1].answer == 1
    assert stats.dropped == {"not json": 2, "empty question": 1, "no answer": 1, "wrong number of choices": 1,
                             "answer out of range": 1, "missing audio": 1, "duplicate id": 1}
    where = {q["item"]: q["reason"] for q in stats.quarantined}
    assert where["set.jsonl:5"] == "not a JSON object" and where["set.jsonl:7"] == "empty question"
    assert where["set.jsonl:11"] == "missing audio"


def test_answer_only_items_get_seeded_distractors_from_the_other_answers(eval_file, tmp_path):
    stats = Stats()
    items = read_items(tmp_path, [eval_file], "auto", stats)
    extra = [type(items[0])(f"x{i}", None, f"Q{i}?", (), f"answer {i}", None, f"f:{i}") for i in range(6)]
    first = with_choices(items + extra, 4, 0, "set", stats)
    again = with_choices(items + extra, 4, 0, "set", Stats())
    other_seed = with_choices(items + extra, 4, 1, "set", Stats())
    assert first == again and first != other_seed
    assert stats.dropped["wrong number of choices"] == 2  # the 3-choice line, after the empty choice
    for item in first:
        assert len(item.choices) == 4 and isinstance(item.answer, int)
        assert len({c.lower() for c in item.choices}) == 4
    chad = next(i for i in first if i.id == "a")
    assert chad.choices[chad.answer] == "N'Djamena"
    with pytest.raises(StageError, match="too few to draw 3 distractors"):
        with_choices(items[:1], 4, 0, "set", Stats())


def test_frames_follow_the_training_markers():
    framed = Frames(audio_offset=100, audio=(900, 901), text=(902, 903), text_size=100)
    assert framed.spoken([3, 4]) == [900, 103, 104, 901, 902]
    assert framed.written([7, 8]) == [902, 7, 8, 903, 902]
    bare = Frames(audio_offset=100, audio=None, text=None, text_size=100)
    assert bare.spoken([3]) == [103] and bare.written([7]) == [7]


def test_parquet_with_embedded_audio_as_hugging_face_ships_the_spoken_sets(tmp_path):
    """LLaMA Questions' copy: `Questions`, `Answer`, an `audio` struct of bytes; a TriviaQA row with
    `question_audio`; MMLU's `subject` becomes the topic."""
    import io

    import numpy as np
    import polars as pl
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(1600, np.float32), 16000, format="WAV")
    wav = buffer.getvalue()
    audio = pl.Struct({"bytes": pl.Binary, "path": pl.String})
    pl.DataFrame({"Questions": ["What is the capital of Peru?", "Who wrote Hamlet?"], "Answer": ["Lima", ""],
                  "audio": [{"bytes": wav, "path": "q0.wav"}, {"bytes": wav, "path": "q1.wav"}]},
                 schema={"Questions": pl.String, "Answer": pl.String, "audio": audio}).write_parquet(
        tmp_path / "llama.parquet")
    (tmp_path / "out").mkdir()
    (tmp_path / "q.flac").write_bytes(b"fLaC")
    (tmp_path / "trivia.jsonl").write_text(json.dumps(
        {"question": "Which planet is red?", "question_id": "t1", "answer": {"value": "Mars", "aliases": []},
         "question_audio": {"path": "q.flac", "bytes": None}, "subject": "astronomy"}) + "\n")
    stats = Stats()
    items = read_items(tmp_path, [tmp_path / "llama.parquet", tmp_path / "trivia.jsonl"], "auto", stats,
                       tmp_path / "out")
    assert [i.question for i in items] == ["What is the capital of Peru?", "Which planet is red?"]
    assert stats.dropped == {"no answer": 1} and stats.quarantined[0]["item"] == "llama.parquet:2"
    saved = items[0].audio
    assert saved.startswith("audio/") and saved.endswith(".wav") and (tmp_path / "out" / saved).read_bytes() == wav
    assert items[1].audio == str(tmp_path / "q.flac") and items[1].topic == "astronomy" and items[1].id == "t1"
