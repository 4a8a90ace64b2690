"""Readers, label handling and splits: fixtures in every official form, malformed input, and the real data."""

from __future__ import annotations

import io
import json
import re
import struct
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from bertnli.data import (
    D2L_LABELS,
    Dataset,
    Example,
    merge_to_two_classes,
    read_dataset,
    resolve_label_map,
    train_validation_split,
)
from bertnli.errors import BertnliWarning, ConfigError, DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# gold, sentence1, sentence2, sentence1_binary_parse, sentence2_binary_parse
SNLI_ROWS = [
    (
        "neutral",
        "Two women are embracing while holding to go packages.",
        "The sisters are hugging goodbye.",
        "( ( Two women ) ( ( are ( embracing ( while ( holding ( to ( go packages ) ) ) ) ) ) . ) )",
        "( ( The sisters ) ( ( are ( hugging goodbye ) ) . ) )",
    ),
    (
        "-",
        "A man in a blue shirt.",
        "A man is wearing a shirt.",
        "( ( A man ) ( in ( a ( blue shirt ) ) ) )",
        "( ( A man ) ( ( is ( wearing ( a shirt ) ) ) . ) )",
    ),
    (
        "entailment",
        'He said "hi" (loudly).',
        "Someone spoke.",
        "( He ( ( said ( `` ( hi ( '' ( -LRB- loudly -RRB- ) ) ) ) ) . ) )",
        "( Someone ( spoke . ) )",
    ),
    (
        "contradiction",
        "Kids play  outside.",
        "Nobody plays.",
        "( Kids ( ( play outside ) . ) )",
        "( Nobody ( plays . ) )",
    ),
]
SNLI_TXT_HEADER = [
    "gold_label",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
    "captionID",
    "pairID",
    "label1",
    "label2",
    "label3",
    "label4",
    "label5",
]
# MultiNLI's txt has SNLI's columns with promptID for captionID, and a genre column after pairID.
MNLI_TXT_HEADER = [*SNLI_TXT_HEADER[:7], "promptID", "pairID", "genre", *SNLI_TXT_HEADER[9:]]
GENRES = ["fiction", "government", "slate", "travel"]
EXPECTED = [Example(s1, s2, gold) for gold, s1, s2, _, _ in SNLI_ROWS if gold != "-"]


def snli_record(i: int, row: tuple, *, official: bool = True, genre: str | None = None) -> dict:
    gold, s1, s2, bp1, bp2 = row
    record = {"gold_label": gold, "sentence1": s1, "sentence2": s2, "pairID": f"{i}r1e"}
    if official:
        record |= {
            "annotator_labels": [gold if gold != "-" else "neutral"],
            "captionID": f"{i}.jpg#0",
            "sentence1_binary_parse": bp1,
            "sentence2_binary_parse": bp2,
            "sentence1_parse": f"(ROOT {bp1})",
            "sentence2_parse": f"(ROOT {bp2})",
        }
    if genre:
        record |= {"genre": genre, "promptID": str(i)}
    return record


def snli_jsonl(rows=SNLI_ROWS, **kwargs) -> str:
    return "".join(json.dumps(snli_record(i, row, **kwargs)) + "\n" for i, row in enumerate(rows))


def snli_txt(rows=SNLI_ROWS, *, mnli: bool = False) -> str:
    lines = ["\t".join(MNLI_TXT_HEADER if mnli else SNLI_TXT_HEADER)]
    for i, (gold, s1, s2, bp1, bp2) in enumerate(rows):
        ids = [str(i), f"{i}e", GENRES[i % 4]] if mnli else [f"{i}.jpg#0", f"{i}r1e"]
        labels = [gold if gold != "-" else "neutral", "", "", "", ""]
        lines.append("\t".join([gold, bp1, bp2, f"(ROOT {bp1})", f"(ROOT {bp2})", s1, s2, *ids, *labels]))
    return "\n".join(lines) + "\n"


def official_zip(path: Path, prefix: str, splits: list[str], *, mnli: bool = False) -> Path:
    """A zip in the official layout, with the README and macOS junk the real archives carry."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{prefix}/README.txt", "read me\n")
        for k, split in enumerate(splits):
            rows = SNLI_ROWS[k:] + SNLI_ROWS[:k]
            genres = {"genre": GENRES[k]} if mnli else {}
            z.writestr(f"{prefix}/{prefix}_{split}.jsonl", snli_jsonl(rows, **genres))
            z.writestr(f"{prefix}/{prefix}_{split}.txt", snli_txt(rows, mnli=mnli))
            z.writestr(f"__MACOSX/{prefix}/._{prefix}_{split}.jsonl", b"\x00\x05\x16\x07\xff")
    return path


def d2l_read_snli(file_name: Path):
    """d2l's ``read_snli``, as published, for comparison."""

    def extract_text(s):
        s = re.sub("\\(", "", s)
        s = re.sub("\\)", "", s)
        s = re.sub("\\s{2,}", " ", s)
        return s.strip()

    label_set = {"entailment": 0, "contradiction": 1, "neutral": 2}
    with open(file_name) as f:
        rows = [row.split("\t") for row in f.readlines()[1:]]
    premises = [extract_text(row[1]) for row in rows if row[0] in label_set]
    hypotheses = [extract_text(row[2]) for row in rows if row[0] in label_set]
    labels = [label_set[row[0]] for row in rows if row[0] in label_set]
    return premises, hypotheses, labels


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


# ---- SNLI / MultiNLI ------------------------------------------------------------------------------
@pytest.mark.parametrize("official", [True, False], ids=["all-keys", "shared-copy-keys"])
def test_snli_jsonl(tmp_path, official):
    data = read_dataset(write(tmp_path / "snli_1.0_dev.jsonl", snli_jsonl(official=official)))
    assert data.name == "snli_1.0_dev"
    assert data.examples == EXPECTED
    assert data.skipped == Counter({"no gold label (-)": 1})
    assert "3 pairs" in data.describe() and "1 no gold label (-)" in data.describe()


def test_snli_txt_reads_like_the_jsonl(tmp_path):
    data = read_dataset(write(tmp_path / "snli_1.0_dev.txt", snli_txt()))
    assert data.examples == EXPECTED
    assert data.skipped == Counter({"no gold label (-)": 1})


def test_snli_zip_and_folder(tmp_path):
    archive = official_zip(tmp_path / "snli_1.0.zip", "snli_1.0", ["train", "dev", "test"])
    dev = read_dataset(archive, split="dev")
    assert dev.name == "snli_1.0_dev"
    assert [e.label for e in dev.examples] == ["entailment", "contradiction", "neutral"]
    assert read_dataset(f"{archive}:dev").examples == dev.examples
    as_txt = read_dataset(archive, split="snli_1.0/snli_1.0_dev.txt")
    assert read_dataset(f"{archive}:snli_1.0/snli_1.0_dev.txt").examples == as_txt.examples
    assert as_txt.examples == dev.examples
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "extracted")
    for folder in (tmp_path / "extracted", tmp_path / "extracted" / "snli_1.0"):
        assert read_dataset(folder, split="dev").examples == dev.examples
    assert read_dataset(tmp_path / "extracted" / "snli_1.0" / "snli_1.0_test.txt").name == "snli_1.0_test"


def test_zip_needs_a_known_split(tmp_path):
    archive = official_zip(tmp_path / "snli_1.0.zip", "snli_1.0", ["train", "dev", "test"])
    with pytest.raises(DataError, match=r"choose one with a split.*dev, test, train"):
        read_dataset(archive)
    with pytest.raises(DataError, match=r"no split 'valid'.*dev, test, train"):
        read_dataset(archive, split="valid")
    with pytest.raises(ConfigError, match="also given"):
        read_dataset(f"{archive}:dev", split="test")


def patched_zip(path: Path, *, flags: int = 0, method: int = zipfile.ZIP_DEFLATED) -> Path:
    """A one-member zip whose headers say what Python's zipfile cannot write: encrypted (flag bit 0), or
    compressed with a method it cannot unpack (9: Deflate64)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("pairs.jsonl", '{"premise": "a", "hypothesis": "b", "label": "neutral"}\n')
    data = bytearray(path.read_bytes())
    for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the local and the central header
        start = data.index(signature) + at
        data[start:start + 4] = struct.pack("<HH", flags, method)
    return write(path, bytes(data))


def test_zip_members_zipfile_cannot_unpack_name_archive_and_member(tmp_path):
    assert len(read_dataset(patched_zip(tmp_path / "plain.zip"))) == 1
    locked = patched_zip(tmp_path / "locked.zip", flags=0x1)
    with pytest.raises(DataError) as caught:
        read_dataset(locked)
    assert str(caught.value).startswith(f"{locked}/pairs.jsonl: is encrypted (it needs a password); extract it")
    deflate64 = patched_zip(tmp_path / "deflate64.zip", method=9)
    with pytest.raises(DataError) as caught:
        read_dataset(deflate64)
    assert str(caught.value).startswith(f"{deflate64}/pairs.jsonl: is compressed with method 9, which Python's "
                                        "zipfile cannot unpack")


def test_mnli_zip_txt_and_genres(tmp_path):
    splits = ["train", "dev_matched", "dev_mismatched"]
    archive = official_zip(tmp_path / "multinli_1.0.zip", "multinli_1.0", splits, mnli=True)
    matched = read_dataset(archive, split="dev_matched")
    assert matched.name == "multinli_1.0_dev_matched"
    assert {e.genre for e in matched.examples} == {"government"}
    txt = read_dataset(archive, split="multinli_1.0_dev_matched.txt")
    assert [(e.premise, e.label) for e in txt.examples] == [(e.premise, e.label) for e in matched.examples]
    assert [e.genre for e in txt.examples] == ["government", "slate", "travel"]
    with pytest.raises(DataError, match=r"no split 'dev'.*dev_matched, dev_mismatched, train"):
        read_dataset(archive, split="dev")


def test_multinli_text_keeps_its_whitespace(tmp_path):
    row = ("neutral", "The new rights are nice enough", "Everyone likes the benefits ", "( x )", "( y )")
    data = read_dataset(write(tmp_path / "m.jsonl", snli_jsonl([row])))
    assert data.examples[0].hypothesis == "Everyone likes the benefits "


def test_d2l_text_reproduces_d2l(tmp_path):
    txt = write(tmp_path / "snli_1.0_test.txt", snli_txt())
    premises, hypotheses, labels = d2l_read_snli(txt)
    expected = [Example(p, h, D2L_LABELS[y]) for p, h, y in zip(premises, hypotheses, labels)]
    assert read_dataset(txt, d2l_text=True).examples == expected
    jsonl = write(tmp_path / "snli_1.0_test.jsonl", snli_jsonl())
    assert read_dataset(jsonl, d2l_text=True).examples == expected
    assert expected[1].premise == "He said `` hi '' -LRB- loudly -RRB- ."
    # The texts are tokenised, and stay marked so through splits and merges: word tokenizers read them whole.
    tokenised = read_dataset(jsonl, d2l_text=True)
    assert tokenised.tokenised and not read_dataset(jsonl).tokenised
    assert all(half.tokenised for half in train_validation_split(tokenised, validation_fraction=0.5, seed=0))
    assert merge_to_two_classes(tokenised).tokenised


def test_d2l_text_needs_the_binary_parse(tmp_path):
    path = write(tmp_path / "snli_1.0_dev.jsonl", snli_jsonl(official=False))
    with pytest.raises(DataError, match=r"snli_1.0_dev.jsonl:1: d2l_text \(--d2l-text\) reads the "
                                        r"sentence1_binary_parse"):
        read_dataset(path, d2l_text=True)


# ---- SICK -----------------------------------------------------------------------------------------
SICK_HEADER = (
    "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tentailment_AB\tentailment_BA\t"
    "sentence_A_original\tsentence_B_original\tsentence_A_dataset\tsentence_B_dataset\tSemEval_set"
)


def sick_file(tmp_path: Path) -> Path:
    rows = [
        ("1", "A kid plays", "A child plays", "ENTAILMENT", "TRAIN"),
        ("2", "A dog runs", "A cat sleeps", "NEUTRAL", "TRIAL"),
        ("3", "A man sings", "Nobody sings", "CONTRADICTION", "TEST"),
        ("4", "A girl reads", "A girl is reading", "ENTAILMENT", "TRAIN"),
    ]
    lines = [SICK_HEADER] + [
        "\t".join([i, a, b, label, "4.5", "A_x_B", "B_x_A", a, b, "FLICKR", "FLICKR", part])
        for i, a, b, label, part in rows
    ]
    return write(tmp_path / "SICK.txt", "\r\n".join(lines))  # CRLF, no final newline


def test_sick(tmp_path):
    path = sick_file(tmp_path)
    with pytest.warns(BertnliWarning) as told:  # its TEST part among the rest: said, with how to choose
        every = read_dataset(path)
    assert str(told[0].message) == (f"{path} holds SemEval-2014's TRAIN, TEST, TRIAL parts, and all were read "
                                    "(TRAIN 2, TEST 1, TRIAL 1 pairs); to read one, name it after the file, as in "
                                    "SICK.txt:train (split='train' in Python)")
    assert told[0].filename == __file__  # said where the caller read it
    assert every.name == "SICK"
    assert [e.label for e in every.examples] == ["entailment", "neutral", "contradiction", "entailment"]
    assert every.examples[3] == Example("A girl reads", "A girl is reading", "entailment")
    train = read_dataset(path, sick_set="train")
    assert train.name == "SICK[TRAIN]" and len(train) == 2
    assert read_dataset(path, split="test").examples == [every.examples[2]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # parts chosen: no warning
        assert len(read_dataset(path, sick_set=["TRAIN", "trial"])) == 3
        assert len(read_dataset(f"{path}:trial")) == 1
    with pytest.raises(DataError, match="no rows with SemEval_set DEV"):
        read_dataset(path, sick_set="dev")
    with pytest.raises(ConfigError, match="not both"):
        read_dataset(path, split="train", sick_set="test")


def test_rows_without_the_part_asked_for_are_counted_as_skipped(tmp_path):
    rows = [{"premise": "A dog runs", "hypothesis": "An animal moves", "label": "entailment", "SemEval_set": "TRAIN"},
            {"premise": "A cat sits", "hypothesis": "A cat sleeps", "label": "neutral"},
            {"premise": "A man eats", "hypothesis": "Nobody eats", "label": "contradiction", "SemEval_set": "TEST"}]
    path = write(tmp_path / "parts.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    train = read_dataset(path, sick_set="train")
    assert [e.premise for e in train.examples] == ["A dog runs"]
    assert dict(train.skipped) == {"no SemEval_set": 1}
    # --limit stops as its last pair is read: a broken line after it is never reached.
    broken = write(tmp_path / "broken.jsonl", '{"premise": "a", "hypothesis": "b", "label": "neutral"}\n{not json\n')
    assert len(read_dataset(broken, limit=1)) == 1
    with pytest.raises(DataError, match=r"broken.jsonl:2: not valid JSON"):
        read_dataset(broken)


def test_sick_set_needs_a_sick_file(tmp_path):
    path = write(tmp_path / "snli_1.0_dev.jsonl", snli_jsonl())
    with pytest.raises(DataError, match="no SemEval_set column"):
        read_dataset(path, sick_set="TRAIN")


# ---- RTE ------------------------------------------------------------------------------------------
def test_rte_with_and_without_labels(tmp_path):
    (tmp_path / "RTE").mkdir()
    train = write(
        tmp_path / "RTE" / "train.tsv",
        'index\tsentence1\tsentence2\tlabel\n0\t"Quoted start, and\tno end.\tentailment\n'
        '1\tHe said "yes".\t"No" was said.\tnot_entailment\n',
    )
    data = read_dataset(train)
    assert data.name == "RTE/train"
    assert data.examples == [
        Example('"Quoted start, and', "no end.", "entailment"),
        Example('He said "yes".', '"No" was said.', "not_entailment"),
    ]
    write(tmp_path / "RTE" / "test.tsv", "index\tsentence1\tsentence2\n0\tA b.\tC d.\n1\tE f.\tG h.\n")
    test = read_dataset(tmp_path / "RTE", split="test")
    assert test.examples == [Example("A b.", "C d."), Example("E f.", "G h.")]
    assert "unlabelled" in test.describe()


# ---- generic files, labels ------------------------------------------------------------------------
def test_generic_csv_with_quotes_and_column_mapping(tmp_path):
    path = write(
        tmp_path / "pairs.csv",
        '\ufeffid,claim,evidence,verdict\n1,"A, b","multi\nline",Entailment\n2,"He said ""hi""",c,NEUTRAL\n',
    )
    data = read_dataset(path, columns={"premise": "evidence", "hypothesis": "claim", "label": "verdict"})
    assert data.examples == [
        Example("multi\nline", "A, b", "entailment"),
        Example("c", 'He said "hi"', "neutral"),
    ]
    unlabelled = read_dataset(path, columns={"premise": "evidence", "hypothesis": "claim", "label": None})
    assert [e.label for e in unlabelled.examples] == [None, None]


def test_each_pair_keeps_its_name_in_the_file(tmp_path):
    """SNLI's pairID, a JSON id as written (text or number), a column named with --columns id=...: kept with the
    pair, so that its prediction can be joined back; not part of the pair's identity."""
    snli = read_dataset(write(tmp_path / "snli.jsonl", snli_jsonl()))
    assert [e.id for e in snli.examples] == [f"{i}r1e" for i, row in enumerate(SNLI_ROWS) if row[0] != "-"]
    assert snli.examples == EXPECTED and snli.columns["id"] == "pairID"
    mixed = read_dataset(write(tmp_path / "mixed.jsonl", '{"premise": "a", "hypothesis": "b", "id": 7}\n'
                                                         '{"premise": "c", "hypothesis": "d"}\n'))
    assert [e.id for e in mixed.examples] == [7, None]
    claims = read_dataset(write(tmp_path / "claims.csv", "claim_id,evidence,claim\nc-1,a,b\n,c,d\n"),
                          columns={"premise": "evidence", "hypothesis": "claim", "id": "claim_id"})
    assert [e.id for e in claims.examples] == ["c-1", None]
    with pytest.raises(DataError, match=r"odd.jsonl:1: id 'id' is true, not a string or an integer"):
        read_dataset(write(tmp_path / "odd.jsonl", '{"premise": "a", "hypothesis": "b", "id": true}\n'))
    # A key named for the id that no JSON row has (a typo): said, as a missing premise is, not left out unsaid.
    docs = write(tmp_path / "docs.jsonl", '{"source": "a", "claim": "b", "doc_id": 1}\n{"source": "c", "claim": "d"}\n')
    named = {"premise": "source", "hypothesis": "claim"}
    assert [e.id for e in read_dataset(docs, columns={**named, "id": "doc_id"}).examples] == [1, None]
    with pytest.raises(DataError, match=r"docs.jsonl: no row has the key 'docid' named for the id \(--columns "
                                        r"id=docid"):
        read_dataset(docs, columns={**named, "id": "docid"})


def test_tsv_quoted_as_csv_writers_quote_it_is_said_rather_than_read_with_its_quotes_unsaid(tmp_path):
    import csv

    path = tmp_path / "quoted.tsv"
    with path.open("w", newline="") as f:  # Python's csv module (as pandas) quotes a field holding a quote
        writer = csv.writer(f, delimiter="\t")
        writer.writerows([["premise", "hypothesis", "label"], ["A dog runs", "An animal moves", "entailment"],
                          ['"Stop," she said', "She spoke", "entailment"]])
    with pytest.warns(BertnliWarning, match=r"quoted.tsv:3: a field is quoted as CSV writers quote it .*TSV is "
                                            r"read unquoted, as GLUE writes it") as told:
        data = read_dataset(path)
    assert told[0].filename == __file__  # said where the caller read it
    assert data.examples[1].premise == '"""Stop,"" she said"'  # as GLUE's files are read: quotes are text
    first = write(tmp_path / "first.tsv", 'premise\thypothesis\n"""Stop,"" she said"\tShe spoke\n')
    with pytest.warns(BertnliWarning, match=r"first.tsv:2: a field is quoted") as told:  # the first row, read apart
        read_dataset(first)
    assert told[0].filename == __file__
    with path.open("w", newline="") as f:
        csv.writer(f, delimiter="\t").writerows([["premise", "hypothesis"], ["a\tb", "c"]])
    with pytest.raises(DataError, match=r"quoted.tsv:2: 3 tab-separated fields where the header has 2; TSV is read "
                                        r"unquoted"):
        read_dataset(path)
    with warnings.catch_warnings():  # GLUE's own quotes, as RTE has them: no warning
        warnings.simplefilter("error")
        read_dataset(write(tmp_path / "rte.tsv", 'index\tsentence1\tsentence2\tlabel\n0\t"Yes," he said.\tHe '
                                                 'spoke.\tentailment\n'))


def test_gzip_compressed_files_and_streams_are_read_as_what_they_hold(tmp_path):
    import gzip

    text = snli_jsonl()
    plain = read_dataset(write(tmp_path / "snli.jsonl", text))
    packed = tmp_path / "snli.jsonl.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    data = read_dataset(packed)
    assert data.examples == plain.examples and data.name == "snli"
    assert read_dataset(io.BytesIO(gzip.compress(text.encode()))).examples == plain.examples  # standard input
    packed.write_bytes(gzip.compress(text.encode())[:-12])  # cut short, as by an interrupted copy
    with pytest.raises(DataError, match=r"snli.jsonl.gz: a gzip file cut short or damaged"):
        read_dataset(packed)


def test_semicolon_separated_tables_as_spreadsheets_write_them_where_commas_mark_decimals(tmp_path):
    text = ('premise;hypothesis;label\n"Il pleut; il fait 3,5 degrés";Il fait chaud;contradiction\n'
            "Un chat, noir;Un animal;entailment\n")
    for name in ("excel.csv", "excel.txt"):  # by suffix, or by its first line
        data = read_dataset(write(tmp_path / name, text))
        assert data.examples == [Example("Il pleut; il fait 3,5 degrés", "Il fait chaud", "contradiction", line=2),
                                 Example("Un chat, noir", "Un animal", "entailment", line=3)]
    with pytest.raises(DataError, match=r"short.csv:3: 2 semicolon-separated fields where the header has 3"):
        read_dataset(write(tmp_path / "short.csv", "premise;hypothesis;label\na;b;neutral\na;b\n"))


@pytest.mark.parametrize(
    ("label_map", "expected"),
    [
        ("glue", ["entailment", "neutral", "contradiction"]),
        ("d2l", ["entailment", "contradiction", "neutral"]),
        ({0: "contradiction", "1": "Entailment", "2": "neutral"}, ["contradiction", "entailment", "neutral"]),
    ],
)
def test_numeric_labels_need_a_mapping(tmp_path, label_map, expected):
    text = "premise,hypothesis,label\na,b,0\nc,d,1\ne,f,2\ng,h,-1\n"
    path = write(tmp_path / "numbers.csv", text)
    data = read_dataset(path, label_map=label_map)
    assert [e.label for e in data.examples] == expected
    assert data.skipped == Counter({"no gold label (-1)": 1})


def test_mapped_labels_match_in_any_case_as_label_names_do(tmp_path):
    path = write(tmp_path / "fever.csv", "premise,hypothesis,label\na,b,SUPPORTS\nc,d,Refutes\ne,f,NOT ENOUGH INFO\n")
    data = read_dataset(path, label_map={"supports": "entailment", "REFUTES": "contradiction",
                                         "Not Enough Info": "neutral"})
    assert [e.label for e in data.examples] == ["entailment", "contradiction", "neutral"]


def test_numeric_labels_without_mapping_are_refused(tmp_path):
    path = write(tmp_path / "numbers.jsonl", '{"premise": "a", "hypothesis": "b", "label": 1}\n')
    with pytest.raises(DataError, match=r"numbers.jsonl:1: label '1' is a number.*ambiguous.*label_map='glue'"):
        read_dataset(path)
    assert read_dataset(path, label_map="glue").examples == [Example("a", "b", "neutral")]
    with pytest.raises(DataError, match="not in the label mapping"):
        read_dataset(path, label_map={"0": "entailment"})


def test_generic_tsv_and_header_detection(tmp_path):
    text = "sentence_A\tsentence_B\tlabel\nA b\tC d\tcontradiction\n"
    assert read_dataset(write(tmp_path / "x.tsv", text)).examples == [Example("A b", "C d", "contradiction")]
    glue_style = read_dataset(write(tmp_path / "g.csv", "idx,text_a,text_b,label\n0,A b,C d,neutral\n"))
    assert glue_style.examples == [Example("A b", "C d", "neutral")]
    assert glue_style.columns == {"premise": "text_a", "hypothesis": "text_b", "label": "label"}
    assert len(read_dataset(write(tmp_path / "x.data", text))) == 1
    assert len(read_dataset(write(tmp_path / "y.txt", "premise,hypothesis\na,b\n"))) == 1
    assert len(read_dataset(write(tmp_path / "z.dat", text.replace("\t", ",")), format="csv")) == 1
    with pytest.raises(DataError, match="cannot tell the format"):
        read_dataset(write(tmp_path / "w.data", "just words\n"))


def test_options_are_checked():
    with pytest.raises(ConfigError, match="unknown data format"):
        read_dataset("x.csv", format="xlsx")
    with pytest.raises(ConfigError, match="unknown column role"):
        read_dataset("x.csv", columns={"text": "a"})
    with pytest.raises(ConfigError, match="presets: glue, d2l"):
        read_dataset("x.csv", label_map="hf")
    with pytest.raises(ConfigError, match="unknown label"):
        read_dataset("x.csv", label_map={"0": "yes"})


def test_a_label_the_mapping_misses_is_named_with_how_to_add_it(tmp_path):
    claims = tmp_path / "claims.tsv"
    claims.write_text("evidence\tclaim\tverdict\na\tb\tSUPPORTS\na\tc\tNOT ENOUGH INFO\n")
    with pytest.raises(DataError) as missed:
        read_dataset(claims, columns={"premise": "evidence", "hypothesis": "claim", "label": "verdict"},
                     label_map={"SUPPORTS": "entailment", "REFUTES": "contradiction"})
    assert str(missed.value) == (f"{claims}:3: label 'NOT ENOUGH INFO' is not in the label mapping (it maps "
                                 "supports, refutes) nor a known label (entailment, neutral, contradiction, "
                                 "not_entailment); add it to the mapping: --label-map '...,NOT ENOUGH INFO=<label>' "
                                 "({..., 'NOT ENOUGH INFO': <label>} in Python)")


def test_a_raw_label_mapped_to_two_labels_is_refused():
    """Raw labels match in any case and as numbers or text, so these name one raw label twice."""
    for twice in ({"1": "neutral", 1: "entailment"}, {"E": "entailment", "e": "contradiction"}):
        with pytest.raises(ConfigError, match=r"label mapping gives '(1|e)' two labels"):
            read_dataset("x.csv", label_map=twice)
    assert resolve_label_map({"E": "entailment", "e": "Entailment"}) == {"e": "entailment"}


def test_a_data_folder_may_hold_a_config_json_and_a_run_may_not_be_read_as_data(tmp_path):
    folder = tmp_path / "claims"
    folder.mkdir()
    write(folder / "train.jsonl", snli_jsonl())
    write(folder / "config.json", "{}")  # a data folder's own settings
    assert read_dataset(folder).examples == EXPECTED
    write(folder / "metrics.jsonl", "")  # beside config.json: a run's record
    with pytest.raises(DataError, match="a model folder or a training run, not data"):
        read_dataset(folder)


def test_a_dataset_is_a_sequence_of_examples(tmp_path):
    data = read_dataset(write(tmp_path / "snli.jsonl", snli_jsonl()))
    assert list(data) == data.examples and data[0] == EXPECTED[0] and data[-1] == EXPECTED[-1]
    head = data[:2]
    assert isinstance(head, Dataset) and head.examples == EXPECTED[:2] and head.name == "snli[:2]"
    assert data[::-1].name == "snli[::-1]" and data[::-1].examples == EXPECTED[::-1]  # named as written
    assert head.columns == data.columns
    built = Dataset("built", (Example(p, h, "entailment") for p, h in [("a", "b"), ("c", "d")]))  # a generator
    assert len(built) == 2 and [e.premise for e in built] == ["a", "c"]


def test_read_dataset_takes_binary_streams_and_a_whole_limit():
    text = '{"premise": "a", "hypothesis": "b"}\n{"premise": "c", "hypothesis": "d"}\n'
    assert len(read_dataset(io.BytesIO(text.encode()))) == 2
    with pytest.raises(TypeError, match=r"reads paths and binary streams, not text streams.*io.BytesIO"):
        read_dataset(io.StringIO(text))
    with pytest.raises(ConfigError, match=r"limit must be a whole number of pairs, not 1\.5"):
        read_dataset(io.BytesIO(text.encode()), limit=1.5)


# ---- malformed input: DataError with file and line -----------------------------------------------
GOOD = '{"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}\n'


def test_rows_with_empty_text_are_skipped_and_counted(tmp_path):
    empty_premise = '{"sentence1": " ", "sentence2": "b", "gold_label": "neutral"}\n'
    dataset = read_dataset(write(tmp_path / "some_empty.jsonl", GOOD + empty_premise + GOOD))
    assert len(dataset) == 2
    assert dataset.skipped == {"empty premise or hypothesis": 1}
    dataset = read_dataset(write(tmp_path / "t.tsv", "premise\thypothesis\tlabel\na\t\tneutral\na\tb\tneutral\n"))
    assert len(dataset) == 1 and dataset.skipped == {"empty premise or hypothesis": 1}


def test_missing_values_are_skipped_and_counted_like_empty_ones(tmp_path):
    """JSON null (pandas writes NaN so) and invisible text are empty; an empty label is no gold label."""
    rows = [GOOD, '{"sentence1": null, "sentence2": "b", "gold_label": "neutral"}\n',
            '{"sentence1": "\\u200b \\u0000", "sentence2": "b", "gold_label": "neutral"}\n',
            '{"sentence1": "a", "sentence2": "b", "gold_label": null}\n', GOOD]
    dataset = read_dataset(write(tmp_path / "nulls.jsonl", "".join(rows)))
    assert len(dataset) == 2 and [e.line for e in dataset.examples] == [1, 5]
    assert dataset.skipped == {"empty premise or hypothesis": 2, "no gold label (empty)": 1}
    # Each reason's rows are named by line, the first few of them, to be found and mended.
    assert dataset.describe().endswith("; skipped 2 empty premise or hypothesis (lines 2, 3), 1 no gold label "
                                       "(empty) (line 4)")
    many = read_dataset(write(tmp_path / "many.jsonl", "".join([GOOD, *[rows[1]] * 5])))
    assert many.skipped_lines == {"empty premise or hypothesis": [2, 3, 4]}
    assert many.describe().endswith("skipped 5 empty premise or hypothesis (lines 2, 3, 4, ...)")
    with pytest.raises(DataError, match=r"holds no examples \(skipped 2 empty premise or hypothesis \(lines 1, 2\)\)"):
        read_dataset(write(tmp_path / "none.jsonl", "".join(rows[1:3])))
    dataset = read_dataset(write(tmp_path / "t.csv", "premise,hypothesis,label\na,b,neutral\na,b,\n"))
    assert len(dataset) == 1 and dataset.skipped == {"no gold label (empty)": 1}
    # Characters a font may lack (private use, newer than this Python's Unicode tables) are text all the same.
    for text in ("\ue000", "\U0001fa77"):
        assert len(read_dataset(write(tmp_path / "rare.jsonl", json.dumps({"premise": text, "hypothesis": "b"})))) == 1


@pytest.mark.parametrize(
    ("name", "content", "line", "problem"),
    [
        ("bad.jsonl", GOOD + GOOD + '{"sentence1": "a",\n', 3, "not valid JSON"),
        ("bad.jsonl", GOOD + '{"sentence1": "a"\n', 2, "not valid JSON (Expecting ',' delimiter at column 18)"),
        ("bad.jsonl", GOOD + "[1, 2]\n", 2, "expected a JSON object"),
        ("bad.jsonl", GOOD + '{"sentence1": "a", "gold_label": "neutral"}\n', 2, "no 'sentence2' field"),
        ("bad.jsonl", GOOD + '{"sentence1": "a", "sentence2": 7, "gold_label": "neutral"}\n', 2, "is 7, not text"),
        ("bad.jsonl", GOOD + '{"sentence1": "a \\ud83d", "sentence2": "b"}\n', 2, "\\ud83d, half of a surrogate pair"),
        ("bad.jsonl", GOOD + '{"sentence1": "a", "sentence2": "b", "gold_label": "maybe"}\n', 2, "unknown label"),
        ("bad.jsonl", GOOD.encode() + b'{"sentence1": "caf\xe9"}\n', 2, "not UTF-8 text"),
        ("bad.tsv", "premise\thypothesis\tlabel\na\tb\tneutral\na\tb\n", 3, "2 tab-separated fields"),
        ("bad.csv", 'premise,hypothesis,label\na,"b\nc",neutral\na,b\n', 4, "2 comma-separated fields"),
        ("bad.csv", 'premise,hypothesis,label\na,"b"x,neutral\n', 2, "malformed CSV"),
        ("bad.csv", 'premise,hypothesis,label\na,b,neutral\na,"b,neutral\nc,d,neutral\n', 3, "malformed CSV"),
        ("bad.csv", "text,other\na,b\n", 1, "cannot tell which column holds the premise"),
        ("tabs.csv", "premise\thypothesis\tlabel\na\tb\tneutral\n", 1, "a tab-separated file? Read it with "
                                                                         "--format tsv"),
        ("bad.csv", "premise,hypothesis\na,b\n", 1, "no column 'gold' for the label"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, name, content, line, problem):
    path = write(tmp_path / name, content)
    columns = {"label": "gold"} if "'gold'" in problem else None
    with pytest.raises(DataError, match=re.escape(problem)) as caught:
        read_dataset(path, columns=columns)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize(
    ("value", "problem"),
    [("1" * 5000, "not readable JSON (Exceeds the limit (4300 digits) for integer string conversion: value has "
                  "5000 digits)"),
     ("[" * 100_000 + "]" * 100_000, "not readable JSON (nested too deeply)")],
    ids=["long-number", "deep-nesting"],
)
def test_json_python_cannot_read_names_file_and_line(tmp_path, value, problem):
    path = write(tmp_path / "bad.jsonl", GOOD + '{"sentence1": "a", "sentence2": "b", "x": ' + value + "}\n")
    with pytest.raises(DataError) as caught:
        read_dataset(path)
    assert str(caught.value) == f"{path}:2: {problem}"


def test_a_column_read_twice_is_refused(tmp_path):
    """Which of two same-named columns is meant cannot be told; a repeated column that is not read is harmless."""
    for name, text, column in (("twice.csv", "premise,premise,hypothesis,label\na,b,c,neutral\n", "premise"),
                               ("twice.tsv", "premise\thypothesis\tlabel\tlabel\na\tb\tneutral\t-\n", "label")):
        path = write(tmp_path / name, text)
        with pytest.raises(DataError) as caught:
            read_dataset(path)
        problem = f"has two columns named {column!r}; rename one, so that it is clear which to read"
        assert str(caught.value) == f"{path}:1: {problem}"
    path = write(tmp_path / "notes.csv", "premise,hypothesis,label,note,note\na,b,neutral,x,y\n")
    assert read_dataset(path).examples == [Example("a", "b", "neutral")]


def test_files_of_a_shape_bertnli_does_not_read_say_what_they_are(tmp_path):
    with pytest.raises(DataError, match=r"pairs.json: a JSON array; bertnli reads JSON lines"):
        read_dataset(write(tmp_path / "pairs.json", '[{"premise": "a", "hypothesis": "b"}]\n'))
    with pytest.raises(DataError, match=r"old.tsv:1: its lines end in a carriage return alone"):
        read_dataset(write(tmp_path / "old.tsv", "premise\thypothesis\ra\tb\rc\td\r"))


def test_missing_empty_and_exampleless_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="empty file"):
        read_dataset(write(tmp_path / "empty.tsv", ""))
    with pytest.raises(DataError, match="holds no examples"):
        read_dataset(write(tmp_path / "header.tsv", "premise\thypothesis\n"))
    only_dash = write(tmp_path / "dash.jsonl", snli_jsonl([SNLI_ROWS[1]]))
    with pytest.raises(DataError, match=r"no examples \(skipped"):
        read_dataset(only_dash)
    with pytest.raises(DataError, match="not a readable zip"):
        read_dataset(write(tmp_path / "broken.zip", b"PK not really"), split="dev")


def test_merge_to_two_classes():
    data = Dataset("d", [Example("a", "b", label) for label in ("entailment", "neutral", "contradiction")])
    merged = merge_to_two_classes(data)
    assert merged.name == "d[2-class]"
    assert [e.label for e in merged.examples] == ["entailment", "not_entailment", "not_entailment"]


# ---- splits, fingerprints -------------------------------------------------------------------------
def labelled(n_by_label: dict[str, int]) -> Dataset:
    examples = [Example(f"p{label}{i}", "h", label) for label, n in n_by_label.items() for i in range(n)]
    return Dataset("snli_dev", examples)


def test_split_is_seeded_stratified_and_complete():
    data = labelled({"entailment": 500, "neutral": 300, "contradiction": 200})
    train, validation = train_validation_split(data, seed=3)
    assert (train.name, validation.name) == ("snli_dev[train 90%]", "snli_dev[validation 10%]")
    assert (len(train), len(validation)) == (900, 100)
    assert validation.label_counts() == Counter({"entailment": 50, "neutral": 30, "contradiction": 20})
    assert sorted(train.examples + validation.examples, key=data.examples.index) == data.examples
    assert train.examples == sorted(train.examples, key=data.examples.index)
    again = train_validation_split(data, seed=3)[1]
    assert again.examples == validation.examples
    assert train_validation_split(data, seed=4)[1].examples != validation.examples


def test_split_by_size_fills_exactly():
    data = labelled({"entailment": 7, "neutral": 7, "contradiction": 7})
    train, validation = train_validation_split(data, validation_size=10)
    assert (len(train), len(validation)) == (11, 10)
    assert sorted(validation.label_counts().values()) == [3, 3, 4]
    assert validation.name == "snli_dev[validation 10]"
    for bad in ({"validation_size": 21}, {"validation_fraction": 1.0}, {"validation_size": 0}):
        with pytest.raises(ConfigError):
            train_validation_split(data, **bad)


def test_the_default_share_holds_out_at_most_the_cap():
    data = labelled({"entailment": 500, "neutral": 300, "contradiction": 200})
    train, validation = train_validation_split(data, seed=3, cap=60)  # as 10,000 of 550,000 pairs would be
    assert (len(train), len(validation)) == (940, 60) and validation.name == "snli_dev[validation 60]"
    assert validation.label_counts() == Counter({"entailment": 30, "neutral": 18, "contradiction": 12})
    asked = train_validation_split(data, validation_fraction=0.1, seed=3, cap=60)[1]  # a share asked for is kept
    assert len(asked) == 100 and asked.name == "snli_dev[validation 10%]"
    assert len(train_validation_split(data, seed=3, cap=None)[1]) == 100  # runs recorded before the cap


# ---- the real files in ../shared/data -------------------------------------------------------------
REAL = [
    ("snli/snli_1.0_dev.jsonl", {}, 9842, {"no gold label (-)": 158}),
    ("mnli/multinli_1.0_dev_matched.jsonl", {}, 9815, {"no gold label (-)": 185}),
    ("sick/SICK.txt", {}, 9840, {}),
    ("sick/SICK.txt", {"sick_set": "TRAIN"}, 4439, {}),
    ("sick/SICK.txt", {"sick_set": "TRIAL"}, 495, {}),
    ("sick/SICK.txt", {"sick_set": "TEST"}, 4906, {}),
    ("rte/train.tsv", {}, 2490, {}),
    ("rte/dev.tsv", {}, 277, {}),
    ("rte/test.tsv", {}, 3000, {}),
]
LABELS = {
    "snli/snli_1.0_dev.jsonl": {"entailment": 3329, "neutral": 3235, "contradiction": 3278},
    "mnli/multinli_1.0_dev_matched.jsonl": {"entailment": 3479, "neutral": 3123, "contradiction": 3213},
    "sick/SICK.txt": {"entailment": 2821, "neutral": 5595, "contradiction": 1424},
}


@pytest.mark.parametrize(("file", "options", "size", "skipped"), REAL, ids=[f"{r[0]}{r[1]}" for r in REAL])
def test_real_data_counts(file, options, size, skipped):
    path = SHARED / file
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared NLI data lives in ../shared/data next to the repository)")
    with warnings.catch_warnings(record=True) as told:
        warnings.simplefilter("always")
        data = read_dataset(path, **options)
    assert len(data) == size
    assert data.skipped == Counter(skipped)
    # SICK.txt read whole mixes SemEval's TRAIN, TRIAL and TEST parts: said, with each part's size
    assert [str(w.message).split("(")[1].split(" pairs)")[0] for w in told] == (
        ["TRAIN 4,439, TEST 4,906, TRIAL 495"] if file == "sick/SICK.txt" and not options else [])
    if file in LABELS and not options:
        assert data.label_counts() == Counter(LABELS[file])
    if file == "rte/test.tsv":
        assert not data.label_counts()
    if file == "rte/train.tsv":
        assert data.label_counts() == Counter({"entailment": 1249, "not_entailment": 1241})


def test_a_limit_stops_reading_and_counts_only_what_it_read(tmp_path):
    rows = [{"sentence1": f"p{i}", "sentence2": "h", "gold_label": "-" if i % 3 == 0 else "neutral"}
            for i in range(30)]
    path = write(tmp_path / "rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    data = read_dataset(path, limit=5)
    assert [e.premise for e in data.examples] == ["p1", "p2", "p4", "p5", "p7"]
    assert data.skipped == {"no gold label (-)": 3}
    assert [e.line for e in data.examples] == [2, 3, 5, 6, 8]


def test_genres_are_read_row_by_row_in_json_lines(tmp_path):
    """SNLI rows (no genre) followed by MultiNLI rows (a genre), or the other way round: every genre is kept."""
    snli = {"sentence1": "a b", "sentence2": "c", "gold_label": "entailment"}
    mnli = {"sentence1": "a d", "sentence2": "e", "gold_label": "neutral", "genre": "fiction"}
    for rows, genres in (([snli, mnli, snli], [None, "fiction", None]), ([mnli, snli], ["fiction", None])):
        path = tmp_path / "mixed.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert [e.genre for e in read_dataset(path).examples] == genres
    assert [e.genre for e in read_dataset(path, columns={"genre": None}).examples] == [None, None]


def test_json_lines_may_mix_rows_with_and_without_a_label(tmp_path):
    """A row without a label field is an unlabelled row, first or not: skipped and counted in a labelled file."""
    bare = {"premise": "red dog", "hypothesis": "dog"}
    labelled = {"premise": "a", "hypothesis": "b", "label": "neutral"}
    snli = {"sentence1": "a", "sentence2": "b", "gold_label": "entailment"}
    for rows, lines in (([bare, labelled, bare, labelled], [2, 4]), ([labelled, bare], [1])):
        data = read_dataset(write(tmp_path / "mixed.jsonl", "".join(json.dumps(r) + "\n" for r in rows)))
        assert [(e.label, e.line) for e in data.examples] == [("neutral", n) for n in lines]
        assert data.skipped == {"no gold label (no label field)": len(rows) - len(lines)}
        assert data.skipped_lines == {"no gold label (no label field)": sorted(set(range(1, len(rows) + 1)) - {*lines})}
        assert data.columns["label"] == "label"
    assert "label" not in read_dataset(write(tmp_path / "bare.jsonl", json.dumps(bare) + "\n")).columns
    # Named label and genre columns may also be missing from the first row.
    rows = [bare, {**bare, "verdict": "entailment", "domain": "news"}]
    data = read_dataset(write(tmp_path / "named.jsonl", "".join(json.dumps(r) + "\n" for r in rows)),
                        columns={"label": "verdict", "genre": "domain"})
    assert data.examples == [Example("red dog", "dog", "entailment", "news")]
    assert data.skipped == {"no gold label (no label field)": 1}
    # The texts' columns are still the first row's: a row without them is an error, not an unlabelled row.
    with pytest.raises(DataError, match=r"mixed.jsonl:2: no 'premise' field"):
        read_dataset(write(tmp_path / "mixed.jsonl", json.dumps(bare) + "\n" + json.dumps(snli) + "\n"))
