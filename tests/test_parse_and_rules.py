"""The reply parser and the basic format rules, on replies shaped like the ones real models send."""

from instructir.prompts.parse import parse_reply, strip_wrapping
from instructir.prompts.rules import check_format, clean_text, normalise


def test_strips_numbering_bullets_quotes_labels_and_bold():
    assert strip_wrapping('1. "Please remove the grain."') == "Please remove the grain."
    assert strip_wrapping("  - **Sharpen my photo**") == "Sharpen my photo"
    assert strip_wrapping("(3) “fix the haze please”") == "fix the haze please"
    assert strip_wrapping("Request 4: brighten it up") == "brighten it up"
    assert strip_wrapping("• 'get rid of the rain'") == "get rid of the rain"
    assert strip_wrapping("b) make it sharper") == "make it sharper"


def test_drops_preamble_and_closing_chatter_with_reasons():
    reply = (
        "Sure! Here are some requests:\n\n"
        "1. Remove the noise from my night photo.\n"
        "2. my pic is grainy pls fix\n"
        "I hope these help! Let me know if you need more."
    )
    parsed = parse_reply(reply)
    assert parsed.candidates == ["Remove the noise from my night photo.", "my pic is grainy pls fix"]
    assert [reason for _, reason in parsed.rejected] == ["preamble_or_chatter", "preamble_or_chatter"]


def test_a_preamble_with_a_typographic_apostrophe_is_dropped_like_a_plain_one():
    for apostrophe in ("'", "\u2019", "\u02bc"):
        reply = f"Here{apostrophe}s what a customer might send\nI{apostrophe}ve written five more requests below"
        parsed = parse_reply(reply)
        assert parsed.candidates == [], apostrophe
        assert [reason for _, reason in parsed.rejected] == ["preamble_or_chatter"] * 2, apostrophe
    assert parse_reply("My photo\u2019s too dark, brighten it").candidates == ["My photo\u2019s too dark, brighten it"]


def test_a_truncated_last_line_is_dropped_only_when_the_reply_hit_the_limit():
    reply = "1. Please brighten this dark photo.\n2. The room was so dark that I can bare"
    assert parse_reply(reply, truncated=True).candidates == ["Please brighten this dark photo."]
    assert parse_reply(reply, truncated=True).rejected == [("The room was so dark that I can bare", "truncated")]
    assert len(parse_reply(reply, truncated=False).candidates) == 2


def test_splits_several_numbered_items_on_one_line():
    parsed = parse_reply("1. Fix the blur please 2. Sharpen the faces 3) Remove the shake")
    assert parsed.candidates == ["Fix the blur please", "Sharpen the faces", "Remove the shake"]


def test_a_continuation_reply_starts_without_a_marker():
    parsed = parse_reply(" can you clear up the fog in my lake photo?\n5. dehaze this pls\n6.")
    assert parsed.candidates == ["can you clear up the fog in my lake photo?", "dehaze this pls"]
    assert parsed.rejected == [("6.", "only_markup")]


def test_normalise_ignores_case_punctuation_and_spacing():
    assert normalise("Remove   the NOISE, please!") == normalise("remove the noise please")
    assert normalise("Remove the noise") != normalise("Remove the blur")
    assert clean_text("  fix\u00a0the   blur ") == "fix the blur"
    assert normalise("rain ruined my pic 🌧️ can u fix") == normalise("Rain ruined my pic, can u fix?")
    assert normalise("Réduis le bruit") == "réduis le bruit"


def test_format_rules_give_a_reason_for_each_kind_of_bad_candidate():
    cases = {
        "ok": "Please remove the rain streaks from my photo.",
        "too_short": "Fix",
        "too_long": " ".join(["word"] * 80),
        "no_letters": "1234 !!",
        "non_latin_script": "Пожалуйста, уберите шум с фото",
        "contains_url": "Remove the noise, see https://example.org/photo.jpg",
        "llm_chatter": "As an AI language model I cannot edit photos",
        "echoes_the_prompt": "Write 5 new requests like these about blur",
        "leftover_markup": "Remove the {noise} from [photo]",
        "leftover_numbering": "Make it brighter. 2. Remove the rain streaks",
    }
    for expected, text in cases.items():
        assert check_format(text) == (None if expected == "ok" else expected), text


def test_list_markers_left_inside_a_line_are_caught_but_numbers_in_requests_are_not():
    numbered = [
        "out-of-focus: 4. remove the blur and make it sharp",
        "B: 5. Remove rain stains from the window",
        "sharpen it. 7",
        "Brighten it up, 7. 8. add a bit more contrast",
        "It is dark. (3) Please brighten it",
    ]
    for text in numbered:
        assert check_format(text) == "leftover_numbering", text
    requests = [
        "Denoise please, shot at ISO 3200.",
        "I need this image at 1.22x1.23 for print",
        "Turn this image on 360. Make it look amazing.",
        "Upscale it 4x. It is only 300 px wide",
        "Remove the grain from my 35mm film scan",
    ]
    for text in requests:
        assert check_format(text) is None, text


def test_chatter_with_a_typographic_apostrophe_is_still_chatter():
    assert check_format("Here\u2019s a list of requests to remove noise from a photo") == "llm_chatter"
    assert check_format("Please repeat the below requests and brighten them") == "echoes_the_prompt"
