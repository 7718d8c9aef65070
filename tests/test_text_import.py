"""Text dataset import through the jailed step's function (no jail, no worker: cheap): files and
zips, splits, every kind of bad row named by its line, and the refusals of bad uploads in words."""

import json
from pathlib import Path

import pytest

from tests.archive_builders import image_bytes, make_zip
from tests.fakes import FakeReporter
from tests.text_builders import topic_rows, write_rows
from workers.pipeline.reporting import Cancelled, JobError, Span
from workers.pipeline.steps import dataset_import
from workers.pipeline.text.lengths import histogram, token_lengths
from workers.pipeline.text.rows import TextRow, read_text_dataset


def run_import(upload: Path, work: Path, *, modality: str = "auto", name: str = "", **text) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    request = {"work": str(work), "archive": str(upload), "name": name or upload.name, "modality": modality,
               "limits": {"max_bytes": 2**30, "max_files": 1000, "max_ratio": 200},
               "config": {"val_fraction": 0.2, "seed": 0, "labelling": "auto"},
               "text": {"val_fraction": 0.25, "seed": 3, **text}}
    return dataset_import(request, Span(FakeReporter(), 0, 1))


def refused(upload: Path, work: Path, **options) -> str:
    with pytest.raises(JobError) as error:
        run_import(upload, work, **options)
    assert not (work / "dataset").exists()  # nothing half-built to publish
    return str(error.value)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_one_file_becomes_a_stratified_seeded_split(tmp_path, suffix):
    upload = write_rows(tmp_path / f"topics{suffix}", topic_rows(60))
    assert run_import(upload, tmp_path / "w") == {"modality": "text", "rows": 60, "classes": 3}
    data = read_text_dataset(tmp_path / "w" / "dataset")
    assert data.classes == ["food", "sport", "weather"] and not data.pair
    for label in data.classes:  # 20 a class, a quarter of each to val
        assert sum(row.label == label and row.split == "val" for row in data.rows) == 5
    assert data.report["split"] == {"source": "generated", "seed": 3, "val_fraction": 0.25}
    assert [row["name"] for row in data.report["classes"]] == data.classes
    assert data.report["lengths"]["unit"] == "words" and data.report["lengths"]["min"] == 7
    assert [len(group["rows"]) for group in data.report["sample"]] == [5, 5, 5]
    again = run_import(upload, tmp_path / "w2")
    assert again["rows"] == 60 and read_text_dataset(tmp_path / "w2" / "dataset").rows == data.rows


def test_a_zip_of_train_val_test_files_keeps_their_splits_and_pairs(tmp_path):
    rows = [{**row, "text_pair": f"pair {i}"} for i, row in enumerate(topic_rows(30))]
    files = {name: write_rows(tmp_path / "src" / f"{name}.csv", part)
             for name, part in (("train", rows[:18]), ("validation", rows[18:24]), ("test", rows[24:]))}
    upload = make_zip(tmp_path / "topics.zip", [(f"topics/{path.name}", path.read_bytes()) for path in files.values()]
                      + [("topics/README.md", b"# topics"), ("__MACOSX/._train.csv", b"")])
    run_import(upload, tmp_path / "w")
    data = read_text_dataset(tmp_path / "w" / "dataset")
    assert data.report["warnings"][0] == "Left out 1 file of the archive that is not .csv, .tsv or .jsonl: topics/README.md."
    assert data.pair and [len(data.split(s)) for s in ("train", "val", "test")] == [18, 6, 6]
    assert data.report["split"]["source"] == "archive" and data.report["layout"] == "split files"
    assert data.split("test")[0].text_pair == "pair 24"


def test_bad_rows_are_skipped_and_named_by_line(tmp_path):
    rows = topic_rows(12)
    lines = ["text,label,split"] + [f"{row['text']},{row['label']},train" for row in rows]
    lines += [
        ",sport,train",                      # 14: empty text
        "no label here,,train",              # 15: missing label
        "a stray extra cell,food,train,x",   # 16: wrong number of cells
        f"{rows[0]['text']},food,train",     # 17: the same text as line 2 under another label: a conflict
        f"{rows[1]['text']},{rows[1]['label']},train",  # 18: an exact duplicate of line 3
        "hello,cooking,val",                 # 19: a label no train row has
        "hello,food,later",                  # 20: an unknown split
        "x" * 60 + ",food,train",            # 21: over the length limit
        "caf\udce9 au lait,food,train",     # 22: Latin-1 é, not UTF-8
    ]
    upload = tmp_path / "rows.csv"
    upload.write_bytes("\n".join(lines).encode("utf-8", errors="surrogateescape"))
    result = run_import(upload, tmp_path / "w", max_text_chars=50)
    report = read_text_dataset(tmp_path / "w" / "dataset").report
    reasons = {skip["line"]: skip["reason"] for skip in report["skipped"]}
    assert reasons == {14: "empty text", 15: "missing label", 16: "expected 3 columns, found 4",
                       19: "unknown label “cooking” (no train row has it)",
                       20: "unknown split “later” (use train, val or test)",
                       21: "text is 60 characters, over the limit of 50", 22: "not UTF-8"}
    assert report["skipped_count"] == 7 and report["skipped_reasons"]["not UTF-8"] == 1
    assert report["duplicates"] == {"count": 1, "rows": [{"file": "rows.csv", "line": 18, "first_file": "rows.csv",
                                                          "first": 3}]}
    assert report["conflicts"]["count"] == 1
    assert report["conflicts"]["texts"][0]["labels"] == {"food": [17], "sport": [2]}
    assert any("more than one label" in warning for warning in report["warnings"])
    assert result["rows"] == 12 + 1  # the conflicting row is kept, for the user to fix


def test_named_columns_a_bom_and_json_arrays(tmp_path):
    csv_upload = tmp_path / "reviews.csv"
    body = "review,stars\n" + "".join(f"great film number {i},{i % 2}\n" for i in range(8))
    csv_upload.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert run_import(csv_upload, tmp_path / "a", columns={"text": "review", "label": "stars"})["classes"] == 2
    json_upload = tmp_path / "rows.json"
    json_upload.write_text(json.dumps([{"text": f"row {i}", "label": i % 2} for i in range(6)] + [{"text": 5, "label": 1}, {"label": 0}]))
    run_import(json_upload, tmp_path / "b")
    report = read_text_dataset(tmp_path / "b" / "dataset").report
    assert report["rows"] == 6 and report["skipped"] == [{"file": "rows.json", "line": 7, "reason": "text is not a string"},
                                                 {"file": "rows.json", "line": 8, "reason": "no “text” field"}]


def test_a_csv_without_the_named_columns_names_the_columns_found(tmp_path):
    upload = tmp_path / "reviews.csv"
    upload.write_text("review,sentiment\nnice,pos\nbad,neg\n")
    message = refused(upload, tmp_path / "w")
    assert "no column “text” or “label”" in message and "“review”, “sentiment”" in message


def test_one_class_only_is_refused(tmp_path):
    upload = write_rows(tmp_path / "rows.tsv", topic_rows(9, classes=("sport",)))
    assert "holds one class only (“sport”)" in refused(upload, tmp_path / "w")


def test_a_file_that_is_not_utf8_at_all_is_refused(tmp_path):
    upload = tmp_path / "latin.csv"
    upload.write_bytes("text,label\n".encode() + "".join(f"caf\xe9 {i},a{i % 2}\n" for i in range(10)).encode("latin-1"))
    assert "is not UTF-8 text (10 of 10 rows are not)" in refused(upload, tmp_path / "w")
    utf16 = tmp_path / "wide.csv"
    utf16.write_text("text,label\nhi,a\n", encoding="utf-16")
    assert "is UTF-16 text" in refused(utf16, tmp_path / "w2")


def test_text_and_images_declared_as_the_other_are_refused_in_words(tmp_path):
    rows = write_rows(tmp_path / "rows.csv", topic_rows(12))
    assert "is a text file, not an archive of images" in refused(rows, tmp_path / "a", modality="images")
    zipped_rows = make_zip(tmp_path / "rows.zip", [("rows.csv", rows.read_bytes())])
    assert "holds text rows (rows.csv), not images" in refused(zipped_rows, tmp_path / "b", modality="images")
    pictures = make_zip(tmp_path / "pets.zip", [("cat/a.png", image_bytes("PNG", (1, 2, 3))),
                                                ("dog/b.png", image_bytes("PNG", (3, 2, 1)))])
    assert "holds images (cat/a.png…), not text rows" in refused(pictures, tmp_path / "c", modality="text")
    assert run_import(zipped_rows, tmp_path / "d")["modality"] == "text"  # auto: a zip of rows is text


def test_row_class_and_size_limits(tmp_path):
    upload = write_rows(tmp_path / "rows.jsonl", topic_rows(30))
    assert "more than 20 rows" in refused(upload, tmp_path / "a", max_rows=20)
    assert "over this server's limit" in refused(upload, tmp_path / "b", max_file_bytes=100)
    numbered = write_rows(tmp_path / "ids.csv", [{"text": f"row {i}", "label": f"id-{i}"} for i in range(30)])
    assert "holds 30 different labels" in refused(numbered, tmp_path / "c", max_classes=25)


def test_cancelling_stops_the_import_before_anything_is_written(tmp_path):
    upload = write_rows(tmp_path / "rows.csv", topic_rows(4500))
    work = tmp_path / "w"
    work.mkdir()
    request = {"work": str(work), "archive": str(upload), "name": upload.name, "modality": "text", "limits": {},
               "config": {}, "text": {}}
    with pytest.raises(Cancelled):
        dataset_import(request, Span(FakeReporter(cancel_after=0), 0, 1))
    assert not (work / "dataset").exists() and upload.exists()


def test_several_files_that_are_not_splits_are_refused(tmp_path):
    upload = make_zip(tmp_path / "rows.zip", [("a.csv", b"text,label\nx,y\n"), ("b.csv", b"text,label\nx,z\n")])
    assert "name them train, val and test" in refused(upload, tmp_path / "w")


def test_histogram_bins_cover_every_value():
    shape = histogram([1, 2, 2, 3, 40], bins=4)
    assert (shape["min"], shape["median"], shape["max"]) == (1, 2, 40)
    assert sum(count for _, _, count in shape["bins"]) == 5 and shape["bins"][0] == [1, 10, 4]


def test_token_lengths_count_special_tokens_and_rows_over_the_limit():
    from transformers import BertTokenizerFast

    from tests.text_builders import vocabulary
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocabulary())}, do_lower_case=True)
    rows = [TextRow(text="the match was sunny", label="a", split="train"),
            TextRow(text="goal", label="b", split="train", text_pair="rain and snow")]
    shape = token_lengths(tokenizer, rows, max_length=5, model="tiny")
    assert (shape["min"], shape["max"], shape["over"]) == (6, 7, 2)  # [CLS] … [SEP] ( … [SEP])
    assert shape["unit"] == "tokens" and shape["model"] == "tiny"
