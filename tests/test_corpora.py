"""korean_llm.bench.corpora: Korean manuals from Debian packages as plain-text documents.

The pages are shaped like the packages' own: DocBook XHTML of `debian-faq-ko` 11.1 (a navigation table, a
<style> in the head) and LibreOffice 7.4 help pages (`libreoffice-help-ko`: scripts in the head, an English
title, Korean body text). The packages are real .deb files built with dpkg-deb; `apt-get download` is replaced
by a script on PATH that copies them into the working folder, as apt-get does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from korean_llm.bench import corpora

REPO = Path(__file__).resolve().parents[1]

FAQ_PAGE = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
<title>1장. 정의 및 개관</title><link rel="stylesheet" type="text/css" href="debian.css" />
<style xmlns="" type="text/css">
      body { background-repeat: no-repeat; }
    </style></head><body><div class="navheader"><table width="100%" summary="Navigation header">
<tr><th colspan="3" align="center">1장. 정의 및 개관</th></tr><tr><td width="20%" align="left">
<a accesskey="p" href="index.ko.html"><img src="images/prev.png" alt="이전" /></a> </td></tr></table><hr /></div>
<div class="chapter"><p>Debian GNU/Linux는   특정한 <em>리눅스 배포판</em>이며,
수많은 패키지로 이루어져 있습니다.</p><p>자유 소프트웨어&nbsp;&amp; 공개 소스</p></div></body></html>
"""

LIBREOFFICE_PAGE = """<!DOCTYPE html>
<html lang="ko" dir="ltr">
<head>
<base href="../../../">
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>Find Bar</title>
<script type="text/javascript" src="polyfills.js"></script><script>var x = "<p>not text</p>";</script>
</head>
<body><h1 id="bm_id1">찾기 도구 모음</h1>
<p>찾기 도구 모음을 사용하여 현재 문서에서 텍스트를 검색합니다.<br/>Ctrl+F 키를 누릅니다.</p></body></html>
"""

UNTRANSLATED_PAGE = (
    "<html><body><p>이전 다음</p><p>"
    + "This page of the manual has not been translated yet and is shown in English. " * 4
    + "</p></body></html>"
)


def test_html_text_keeps_the_body_text_with_its_line_breaks() -> None:
    assert corpora.html_text(FAQ_PAGE) == (
        "1장. 정의 및 개관\nDebian GNU/Linux는 특정한 리눅스 배포판이며,\n수많은 패키지로 이루어져 있습니다.\n"
        "자유 소프트웨어 & 공개 소스"
    )
    # an image's alt text is no text; the head (title, scripts, a script's markup-like string) is dropped; <br/>
    # breaks the line
    assert corpora.html_text(LIBREOFFICE_PAGE) == (
        "찾기 도구 모음\n찾기 도구 모음을 사용하여 현재 문서에서 텍스트를 검색합니다.\nCtrl+F 키를 누릅니다."
    )


def _deb(tmp: Path, package: str, folder: str, pages: dict[str, str]) -> Path:
    root = tmp / f"{package}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: test <t@example.org>\n"
        "Description: Korean manual\n",
        encoding="utf-8",
    )
    for name, page in pages.items():
        path = root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    deb = tmp / "debs" / f"{package}_1.0_all.deb"
    deb.parent.mkdir(exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


@pytest.fixture
def fake_apt(tmp_path: Path) -> dict[str, str]:
    """PATH with an `apt-get` that serves the test packages; a log of its calls in $APT_LOG."""
    for name, (package, folder) in corpora.DEBIAN_SETS.items():
        pages = (
            {"index.ko.html": FAQ_PAGE}
            if name == "debian-faq"
            else {"text/shared/find_toolbar.html": LIBREOFFICE_PAGE, "text/shared/untranslated.html": UNTRANSLATED_PAGE}
        )
        _deb(tmp_path, package, folder, pages)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(
        "#!/bin/sh\n"
        'echo "$@" >> "$APT_LOG"\n'
        '[ "$1" = download ] || exit 100\n'
        'for p in "$@"; do case "$p" in -*|download) ;; *)\n'
        f'  cp {tmp_path}/debs/"$p"_*.deb . 2>/dev/null ||\n'
        '  { echo "E: Unable to locate package $p" >&2; exit 100; };;\n'
        "esac; done\n",
        encoding="utf-8",
    )
    apt.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "APT_LOG": str(tmp_path / "apt.log")}


def test_documents_come_from_the_packages_once_then_from_the_cache(
    tmp_path: Path, fake_apt: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in fake_apt.items():
        monkeypatch.setenv(key, value)
    cache = tmp_path / "cache"
    docs = corpora.debian_korean_docs(cache)
    assert list(docs) == ["libreoffice-help", "gimp-help", "debian-faq"]
    assert docs["debian-faq"] == [corpora.html_text(FAQ_PAGE)]
    # the untranslated page (its only Hangul is the navigation) is left out
    assert docs["libreoffice-help"] == [corpora.html_text(LIBREOFFICE_PAGE)] == docs["gimp-help"]
    rows = [json.loads(line) for line in (cache / "debian-faq.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows == [{"text": corpora.html_text(FAQ_PAGE)}]
    calls = Path(fake_apt["APT_LOG"]).read_text().splitlines()
    assert calls == [f"download -q {p}" for p, _ in corpora.DEBIAN_SETS.values()]
    assert corpora.debian_korean_docs(cache) == docs  # read back without apt-get
    assert len(Path(fake_apt["APT_LOG"]).read_text().splitlines()) == 3
    assert not list(cache.glob("*.part"))


def test_a_package_apt_cannot_find_is_one_clear_error(tmp_path: Path, fake_apt: dict[str, str]) -> None:
    (tmp_path / "debs" / "gimp-help-ko_1.0_all.deb").unlink()
    env = {**os.environ, **fake_apt, "PYTHONPATH": str(REPO / "runtime")}
    proc = subprocess.run(
        [sys.executable, "-m", "korean_llm.bench.corpora", "--cache", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "apt-get download gimp-help-ko failed (E: Unable to locate package gimp-help-ko)" in proc.stderr
    assert "Traceback" not in proc.stderr
    # the set before it was written whole; nothing of the failed one
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["libreoffice-help.jsonl"]


def test_vocab_bench_holds_out_what_it_scores(
    tmp_path: Path, fake_apt: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vocabulary benchmark's splits: nothing it scores is in what the tokenizer or the CPT trained on; the
    tokenizers it saves load as HF tokenizers, the extended one a superset of Qwen2.5's."""
    from transformers import AutoTokenizer

    from korean_llm.bench import vocab

    for key, value in fake_apt.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KOREAN_LLM_CACHE", str(tmp_path / "cache"))
    train, held = vocab.corpus_split("debian-docs")
    assert list(held) == ["heldout_debian_faq", "heldout_constitution", "heldout_bills"]
    assert held["heldout_debian_faq"] == [corpora.html_text(FAQ_PAGE)]
    assert len(held["heldout_bills"]) == 2 and len(train) == 2 + 8  # two manual pages, eight bills
    assert not {t for texts in held.values() for t in texts} & set(train)
    pretrain, cpt, heldout = vocab.tiny_domains("manuals")
    assert cpt == [corpora.html_text(LIBREOFFICE_PAGE)] * 2 and heldout == held["heldout_debian_faq"]
    assert len(pretrain) == 11 and not set(pretrain) & set(cpt)  # all of konlpy: the tiny tokenizer's own text
    pretrain, cpt, heldout = vocab.tiny_domains("konlpy")
    assert pretrain == [corpora.html_text(LIBREOFFICE_PAGE)] * 2
    assert len(cpt) == 9 and heldout == held["heldout_bills"]

    figures = vocab.tokenizer_figures(200, 2000, 2, "debian-docs", tmp_path / "tok")
    assert figures["round_trip_failures"] == [] and figures["changed_without_hangul"] == []
    assert figures["sets"]["english"]["token_reduction"] == 0 == figures["sets"]["code"]["token_reduction"]
    base = AutoTokenizer.from_pretrained(tmp_path / "tok" / "base")
    extended = AutoTokenizer.from_pretrained(tmp_path / "tok" / "extended")
    assert len(base) == 151_665 and len(extended) == 151_665 + figures["tokens_added"] > len(base)
    probe = "Debian GNU/Linux는 수많은 패키지로 이루어져 있습니다."
    assert extended.decode(extended(probe)["input_ids"]) == probe
    assert base.convert_tokens_to_ids("<|im_start|>") == extended.convert_tokens_to_ids("<|im_start|>") == 151_644
