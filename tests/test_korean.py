"""Korean text helpers on real Korean strings: normalisation, ratios, repetition, PII, MinHash."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from korean_llm import korean


def test_nfc_composes_decomposed_jamo() -> None:
    decomposed = unicodedata.normalize("NFD", "한국어")
    assert len(decomposed) == 8
    assert korean.nfc(decomposed) == "한국어"


def test_invisible_characters_are_removed_but_tab_and_newline_kept() -> None:
    text = "\ufeff대한\u200b민국\u200d은\x00 민주\u00ad공화국\u202e이다.\t끝\n"
    assert korean.remove_invisible(text) == "대한민국은 민주공화국이다.\t끝\n"


def test_whitespace_is_normalised_per_line() -> None:
    text = "  대한민국은\t\t민주공화국이다.  \r\n\n\n\n\u3000주권은\u00a0국민에게 있다. \n"
    assert korean.normalize_whitespace(text) == "대한민국은 민주공화국이다.\n\n주권은 국민에게 있다."


def test_hangul_ratio_ignores_digits_and_punctuation() -> None:
    assert korean.hangul_ratio("제1조 (국호) 대한민국은 1948년 수립되었다.") == 1.0
    assert korean.hangul_ratio("Python 3.11은 빠르다") == pytest.approx(4 / 10)
    assert korean.hangul_ratio("大韓民國 대한민국") == 0.5
    assert korean.hangul_ratio("12345 !!! ...") == 0.0


def test_duplicate_line_fraction_counts_repeated_lines() -> None:
    assert korean.duplicate_line_fraction("첫째 줄\n둘째 줄\n셋째 줄") == 0.0
    spam = "지금 바로 클릭하세요\n" * 4 + "안녕하세요"
    assert korean.duplicate_line_fraction(spam) == pytest.approx(33 / 49)  # 3 of 4 lines of 11 characters repeat


def test_repeated_ngram_fraction_separates_spam_from_prose() -> None:
    prose = "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다."
    spam = "ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ 대박 " * 30
    assert korean.repeated_ngram_fraction(prose, 10) < 0.05
    assert korean.repeated_ngram_fraction(spam, 10) > 0.9
    assert korean.repeated_ngram_fraction("짧다", 10) == 0.0


@pytest.mark.parametrize(
    ("text", "masked", "kind"),
    [
        ("제 주민등록번호는 900101-1234567입니다.", "제 주민등록번호는 <RRN>입니다.", "RRN"),
        ("외국인등록번호 851231-5123456 확인", "외국인등록번호 <RRN> 확인", "RRN"),
        ("연락처: 010-1234-5678로 전화 주세요.", "연락처: <PHONE>로 전화 주세요.", "PHONE"),
        ("사무실 02-123-4567, 팩스 031-987-6543", "사무실 <PHONE>, 팩스 <PHONE>", "PHONE"),
        ("해외에서는 +82 10-9876-5432로 걸어요.", "해외에서는 <PHONE>로 걸어요.", "PHONE"),
        ("휴대폰 01012345678 입니다", "휴대폰 <PHONE> 입니다", "PHONE"),
        ("문의는 hong.gildong@example.co.kr 로 보내세요.", "문의는 <EMAIL> 로 보내세요.", "EMAIL"),
        ("카드번호 4111-1111-1111-1111 결제", "카드번호 <CARD> 결제", "CARD"),
        ("카드 5500 0000 0000 0004 로", "카드 <CARD> 로", "CARD"),
        ("국민은행 123456-01-123456 으로 입금", "국민은행 <ACCOUNT> 으로 입금", "ACCOUNT"),
        ("신한 110-123-456789 예금주 홍길동", "신한 <ACCOUNT> 예금주 홍길동", "ACCOUNT"),
    ],
)
def test_pii_is_masked_with_a_typed_placeholder(text: str, masked: str, kind: str) -> None:
    out, counts = korean.mask_pii(text)
    assert out == masked
    assert counts[kind] == masked.count(f"<{kind}>")
    assert sum(counts.values()) == counts[kind]


@pytest.mark.parametrize(
    "text",
    [
        "회의는 2024-01-15에 열렸고 2024.01.15 공고되었다.",
        "가격은 15,000원이고 총액은 1,234,567원이다.",
        "버전 v1.2.3 과 Python 3.11.7 을 쓴다.",
        "제10조 제2항에 따라 법률 제12345호를 개정한다.",
        "카드 4111-1111-1111-1112 는 검증숫자가 틀리다.",  # fails the Luhn check
        "주민번호처럼 보이지만 901301-1234567 은 13월이다.",
        "전화 1588-1234 는 대표번호다.",
        "ISBN 없이 12-34-56 같은 짧은 번호.",
        "예산 20,240,115,000원을 편성했다.",
    ],
)
def test_dates_prices_versions_and_law_numbers_are_not_masked(text: str) -> None:
    out, counts = korean.mask_pii(text)
    assert out == text
    assert not counts


def test_pii_types_can_be_selected() -> None:
    out, counts = korean.mask_pii("010-1234-5678 / a@b.kr", types=["EMAIL"])
    assert out == "010-1234-5678 / <EMAIL>"
    assert dict(counts) == {"EMAIL": 1}


def test_luhn() -> None:
    assert korean.luhn_valid("4111111111111111")
    assert not korean.luhn_valid("4111111111111112")


def test_exact_key_depends_only_on_the_text() -> None:
    assert korean.exact_key("대한민국") == korean.exact_key("대한민국")
    assert korean.exact_key("대한민국") != korean.exact_key("대한 민국")


def test_minhash_matches_datasketch_and_estimates_jaccard() -> None:
    from datasketch import MinHash

    perm_a, perm_b = MinHash(num_perm=128, seed=1).permutations
    text = "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다."
    reference = MinHash(num_perm=128, seed=1, hashfunc=int)
    reference.update_batch(korean.shingle_hashes32(text, 5).tolist())
    sig = korean.minhash_signature(text, 5, perm_a, perm_b, chunk=7)
    assert np.array_equal(sig, reference.hashvalues)

    near = text.replace("모든", "일체의")
    other = "김치는 배추를 소금에 절인 뒤 양념을 버무려 항아리에 담아 숙성시킨 음식이다. 지역마다 맛이 다르다."
    similar = float(np.mean(sig == korean.minhash_signature(near, 5, perm_a, perm_b)))
    different = float(np.mean(sig == korean.minhash_signature(other, 5, perm_a, perm_b)))
    assert similar > 0.7
    assert different < 0.1


def test_sentence_split_uses_kss_only_when_installed() -> None:
    try:
        import kss  # noqa: F401
    except ImportError:
        assert korean.split_sentences("첫 문장이다. 둘째 문장이다.") is None
    else:
        assert korean.split_sentences("첫 문장이다. 둘째 문장이다.") == "첫 문장이다.\n둘째 문장이다."
