#!/usr/bin/env python3
"""Generate the embedded ``commonvoice-mini`` fixture corpus for asrbench.

The corpus is a tiny, synthetic stand-in for a Mozilla Common Voice release,
laid out exactly like one so that the Common Voice loader can be exercised
offline and in CI::

    asrbench/corpus/commonvoice-mini/
        README.md
        hi/test.tsv
        hi/clips/common_voice_hi_fixture_0001.mp3 ...
        en/test.tsv
        en/clips/common_voice_en_fixture_0001.mp3 ...

Every sentence below was written for this project (none is taken from Common
Voice or any other dataset).  Audio is synthesized with ``espeak-ng`` to WAV
and converted by ``ffmpeg`` (libmp3lame) to 48 kHz mono CBR MP3, which is what
Common Voice ships.  The corpus exists to give the benchmark a stable
*regression signal*; synthetic speech says nothing about real-world accuracy.

Clip IDs are derived from the position of a sentence in its list
(``common_voice_<locale>_fixture_<NNNN>.mp3``, 1-based).  To keep IDs stable,
only ever *append* sentences to the lists; never reorder or delete them (edit
a sentence in place only if you accept that its clip changes).

The script is deterministic: with the same espeak-ng / ffmpeg / LAME builds a
rerun produces byte-identical MP3 files, TSVs and README.  Different tool
versions may produce slightly different audio.

Usage::

    python scripts/make_fixture_corpus.py [--out asrbench/corpus/commonvoice-mini]

The output directory is deleted and rewritten.  Generation happens in a
temporary sibling directory that only replaces the output once every clip has
been produced and validated (each clip must last 2-12 seconds).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "data" / "commonvoice-mini"

# --------------------------------------------------------------------------
# Sentences (written for this project; one per line).  APPEND ONLY: the
# 1-based position of a sentence is its clip ID.
# --------------------------------------------------------------------------

HI_SENTENCES: tuple[str, ...] = (
    "आज सुबह से लगातार बारिश हो रही है।",
    "कृपया जाने से पहले खिड़की बंद कर दीजिए।",
    "शहर जाने वाली बस शाम सात बजे निकलती है।",
    "हमने बाज़ार से तीन किलो ताज़े टमाटर खरीदे।",
    "मेरे भाई को नींबू वाली गरम चाय बहुत पसंद है।",
    "घने कोहरे की वजह से ट्रेन बीस मिनट देर से आई।",
    "पुल के पास बाएँ मुड़िए और लगभग दो सौ मीटर सीधे चलिए।",
    "दाल में थोड़ा और नमक डालना पड़ेगा।",
    "कल धूप निकलेगी और दक्षिण की ओर से हल्की हवा चलेगी।",
    "वह अपनी चाबियाँ दरवाज़े के पास एक छोटे नीले डिब्बे में रखती है।",
    "वापसी के टिकट का किराया कितना है?",
    "पुस्तकालय सुबह नौ बजे खुलता है और शाम छह बजे बंद होता है।",
    "जब मौसम अच्छा होता है तो मैं पैदल दफ़्तर जाता हूँ।",
    "हमारी उड़ान रद्द हो गई, इसलिए हमने हवाई अड्डे के पास एक शांत होटल में रात बिताई।",
    "दो कप पानी डालिए और चावल को पंद्रह मिनट तक धीमी आँच पर पकने दीजिए।",
    "बच्चे अँधेरा होने तक मैदान में फ़ुटबॉल खेलते रहे।",
    "क्या आप थोड़ा धीरे बोल सकते हैं?",
    "बड़े सभा कक्ष में बयालीस कुर्सियाँ रखी हुई हैं।",
    "सर्दियों में नदी का पानी बहुत ठंडा हो जाता है।",
    "हमें रोटी, दूध, अंडे और एक थैला सेब खरीदने हैं।",
    "मेरे फ़ोन की बैटरी लगभग खत्म हो गई है।",
    "गली के आखिर वाले पुराने घर की छत हरी है और उसके पीछे एक बड़ा बगीचा है।",
    "इस कस्बे में गर्मियाँ गरम और सूखी होती हैं, लेकिन रातें अक्सर ठंडी रहती हैं।",
    "वह अपना छाता भूल गया और पूरी तरह भीगकर घर लौटा।",
    "संग्रहालय हर सोमवार को बंद रहता है।",
    "कृपया अपना उत्तर एक साफ़ कागज़ पर लिखिए।",
    "यह दुकान हर सुबह ताज़ी मछली बेचती है।",
    "समुद्र के किनारे से पहाड़ों तक गाड़ी से पहुँचने में लगभग एक घंटा लगता है।",
    "मुझे एक कप कॉफ़ी और केक का एक टुकड़ा चाहिए।",
    "डॉक्टर ने उसे ज़्यादा पानी पीने और जल्दी सोने की सलाह दी।",
    "रात भर बर्फ़ गिरती रही और सारी सड़कें ढक गईं।",
    "पिछले बसंत में हमने स्कूल के पीछे चार छोटे पेड़ लगाए।",
    "सप्ताह के अंत में बाज़ार में बहुत भीड़ रहती है।",
    "कमरे से बाहर जाते समय बत्ती बुझा दीजिए।",
    "इस महीने सब्ज़ियों के दाम फिर से बढ़ गए।",
    "लंबी सैर के बाद हम झील के किनारे बैठे और हमने खाना खाया।",
    "टैक्सी वाले को शहर से निकलने का एक छोटा रास्ता पता था।",
    "मेरी दादी पूरे परिवार में सबसे अच्छे पराठे बनाती हैं।",
    "आसमान में काले बादल छा गए और तेज़ हवा चलने लगी।",
    "रेलवे स्टेशन के बगल में एक छोटी सी बेकरी है।",
)

EN_SENTENCES: tuple[str, ...] = (
    "It has been raining since early this morning.",
    "Please close the window before you leave.",
    "The bus to the city leaves at seven in the evening.",
    "We bought three kilos of fresh tomatoes at the market.",
    "My brother likes hot tea with a slice of lemon.",
    "The train was twenty minutes late because of the heavy fog.",
    "Turn left at the bridge and walk straight for about two hundred meters.",
    "The soup needs a little more salt.",
    "Tomorrow will be sunny with a light wind from the south.",
    "She keeps her keys in a small blue box near the door.",
    "How much does a return ticket cost?",
    "The library opens at nine in the morning and closes at six in the evening.",
    "I usually walk to work when the weather is nice.",
    "Our flight was cancelled, so we spent the night at a quiet hotel near the airport.",
    "Add two cups of water and let the rice cook slowly for fifteen minutes.",
    "The children played football in the park until it got dark.",
    "Could you please speak a little more slowly?",
    "There are forty-two chairs in the large meeting room.",
    "The water in the river is very cold in winter.",
    "We need to buy bread, milk, eggs and a bag of apples.",
    "The battery in my phone is almost empty.",
    "The old house at the end of the street has a green roof and a big garden behind it.",
    "Summer in this town is hot and dry, but the nights are usually cool.",
    "He forgot his umbrella and came home completely wet.",
    "The museum is closed every Monday.",
    "Please write your answer on a clean sheet of paper.",
    "This shop sells fresh fish every morning.",
    "It takes about one hour to drive from the coast to the mountains.",
    "I would like a cup of coffee and a piece of cake, please.",
    "The doctor told him to drink more water and go to bed early.",
    "Snow fell all night and covered every road in the valley.",
    "Last spring we planted four small trees behind the school.",
    "The market is always very busy on the weekend.",
    "Please turn off the lights when you leave the room.",
    "The price of vegetables went up again this month.",
    "After the long walk we sat by the lake and ate our lunch.",
    "The taxi driver knew a faster way out of the town.",
    "My grandmother makes the best bread in the whole family.",
    "The sky turned dark and a strong wind started to blow.",
    "There is a small bakery next to the train station.",
)

# --------------------------------------------------------------------------
# Fixed synthesis / encoding parameters.  Changing any of these changes the
# audio of every clip.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LocaleSpec:
    """How to synthesize one locale: espeak-ng voice and prosody settings.

    ``speed_wpm`` is espeak-ng ``-s`` (words per minute), ``pitch`` is ``-p``
    (0-99), ``amplitude`` is ``-a`` (0-200) and ``word_gap`` is ``-g`` (extra
    pause between words, in units of 10 ms).
    """

    locale: str
    voice: str
    speed_wpm: int
    pitch: int
    amplitude: int
    word_gap: int
    sentences: tuple[str, ...]


# English uses the en-us voice with the "m3" variant, slightly slowed and with
# a 30 ms word gap: on this sentence set that cut Whisper base's word error
# rate from about 15 % (plain ``-v en-us -s 150``) to about 6 % with a simple
# lowercase/punctuation normalizer, or about 4 % with Whisper's English text
# normalizer.  For Hindi none of the settings tried changed Whisper base's
# (very high, ~90 %) error rate noticeably, so the plain voice is used.
LOCALES: tuple[LocaleSpec, ...] = (
    LocaleSpec(locale="hi", voice="hi", speed_wpm=150, pitch=50, amplitude=100,
               word_gap=0, sentences=HI_SENTENCES),
    LocaleSpec(locale="en", voice="en-us+m3", speed_wpm=140, pitch=50, amplitude=100,
               word_gap=3, sentences=EN_SENTENCES),
)

SAMPLE_RATE = 48_000
MP3_BITRATE = "32k"  # lowest CBR bitrate MPEG-1 Layer III allows at 48 kHz
MIN_SECONDS = 2.0
MAX_SECONDS = 12.0

TSV_COLUMNS = (
    "client_id", "path", "sentence", "up_votes", "down_votes",
    "age", "gender", "accent", "locale", "segment",
)
UP_VOTES = "2"
DOWN_VOTES = "0"

# ffmpeg output options chosen for reproducibility:
#   -fflags +bitexact / -flags:a +bitexact : no encoder version strings
#   -map_metadata -1 / -id3v2_version 0    : no ID3 tag, no copied metadata
# The Xing/"Info" frame that libmp3lame writes is kept on purpose (no
# -write_xing 0): it carries the LAME encoder-delay/padding tag that lets
# decoders report the exact (gapless) duration, and with +bitexact it contains
# no version string or timestamp, so it is byte-stable across reruns.
FFMPEG_OUTPUT_ARGS: tuple[str, ...] = (
    "-map_metadata", "-1",
    "-ac", "1",
    "-ar", str(SAMPLE_RATE),
    "-c:a", "libmp3lame",
    "-b:a", MP3_BITRATE,
    "-fflags", "+bitexact",
    "-flags:a", "+bitexact",
    "-id3v2_version", "0",
    "-f", "mp3",
)

REQUIRED_TOOLS = ("espeak-ng", "ffmpeg", "ffprobe")


class FixtureError(RuntimeError):
    """Raised for any problem that must abort generation."""


@dataclass(frozen=True)
class Clip:
    """One generated clip and its measured properties."""

    path: str
    sentence: str
    seconds: float
    sample_rate: int
    channels: int
    size_bytes: int


def clip_name(locale: str, index: int) -> str:
    """Return the stable Common Voice style file name for 1-based ``index``."""
    return f"common_voice_{locale}_fixture_{index:04d}.mp3"


def client_id(locale: str) -> str:
    """Return a deterministic, Common Voice looking (128 hex digit) client id."""
    return hashlib.sha512(f"asrbench-fixture-espeak-ng-{locale}".encode()).hexdigest()


def normalize_sentence(text: str) -> str:
    """NFC-normalize ``text`` and validate that it is safe for a QUOTE_NONE TSV."""
    text = unicodedata.normalize("NFC", text).strip()
    if not text:
        raise FixtureError("empty sentence")
    for bad in ("\t", "\n", "\r", '"'):
        if bad in text:
            raise FixtureError(f"sentence contains {bad!r}: {text!r}")
    if any(ch.isdigit() for ch in text):
        raise FixtureError(f"sentence contains digits (write numbers as words): {text!r}")
    return text


def check_tools() -> None:
    """Exit with a one-line error if a required external tool is missing."""
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        print(
            f"error: required tool(s) not found on PATH: {', '.join(missing)} "
            "(Debian/Ubuntu: apt-get install -y espeak-ng ffmpeg)",
            file=sys.stderr,
        )
        sys.exit(2)


def run(cmd: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd``; raise :class:`FixtureError` with its stderr if it fails."""
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise FixtureError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    return proc


def tool_version(cmd: list[str]) -> str:
    """Return the first line of a tool's version output (for the README)."""
    out = run(cmd).stdout.decode("utf-8", "replace").strip().splitlines()
    line = out[0].strip() if out else "unknown"
    # Drop install paths / copyright years, keep "<name> <version>".
    for cut in ("  Data at:", " Copyright"):
        line = line.split(cut)[0]
    return line.strip()


def espeak_cmd(spec: LocaleSpec, text_file: Path, wav_file: Path) -> list[str]:
    """Build the espeak-ng command that synthesizes ``text_file`` to ``wav_file``."""
    return [
        "espeak-ng",
        "-v", spec.voice,
        "-s", str(spec.speed_wpm),
        "-p", str(spec.pitch),
        "-a", str(spec.amplitude),
        "-g", str(spec.word_gap),
        "-b", "1",  # input text is UTF-8
        "-f", str(text_file),
        "-w", str(wav_file),
    ]


def ffmpeg_cmd(wav_file: Path, mp3_file: Path) -> list[str]:
    """Build the ffmpeg command that converts ``wav_file`` to a 48 kHz mono MP3."""
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-i", str(wav_file),
        *FFMPEG_OUTPUT_ARGS,
        str(mp3_file),
    ]


def probe(mp3_file: Path) -> tuple[float, int, int]:
    """Return ``(duration_seconds, sample_rate, channels)`` of ``mp3_file`` via ffprobe."""
    proc = run([
        "ffprobe", "-v", "error", "-select_streams", "a:0",
        "-show_entries", "stream=sample_rate,channels:format=duration",
        "-of", "json", str(mp3_file),
    ])
    info = json.loads(proc.stdout)
    stream = info["streams"][0]
    return float(info["format"]["duration"]), int(stream["sample_rate"]), int(stream["channels"])


def synthesize_locale(spec: LocaleSpec, locale_dir: Path, work_dir: Path) -> list[Clip]:
    """Synthesize, encode and measure every sentence of ``spec`` into ``locale_dir``."""
    clips_dir = locale_dir / "clips"
    clips_dir.mkdir(parents=True)
    sentences = [normalize_sentence(s) for s in spec.sentences]
    if len(set(sentences)) != len(sentences):
        raise FixtureError(f"{spec.locale}: duplicate sentences")
    clips: list[Clip] = []
    total = len(sentences)
    for index, sentence in enumerate(sentences, start=1):
        name = clip_name(spec.locale, index)
        text_file = work_dir / f"{spec.locale}_{index:04d}.txt"
        wav_file = work_dir / f"{spec.locale}_{index:04d}.wav"
        mp3_file = clips_dir / name
        text_file.write_text(sentence + "\n", encoding="utf-8")
        run(espeak_cmd(spec, text_file, wav_file))
        run(ffmpeg_cmd(wav_file, mp3_file))
        seconds, rate, channels = probe(mp3_file)
        clip = Clip(name, sentence, seconds, rate, channels, mp3_file.stat().st_size)
        clips.append(clip)
        flag = "" if MIN_SECONDS <= seconds <= MAX_SECONDS else "  <-- OUT OF RANGE"
        print(f"[{spec.locale} {index:3d}/{total}] {name}  {seconds:5.2f} s{flag}", flush=True)
    return clips


def validate(locale: str, clips: list[Clip]) -> list[str]:
    """Return human readable problems (duration / rate / channels) for ``clips``."""
    problems = []
    for clip in clips:
        if not MIN_SECONDS <= clip.seconds <= MAX_SECONDS:
            problems.append(
                f"{locale}/{clip.path}: duration {clip.seconds:.2f} s outside "
                f"{MIN_SECONDS:g}-{MAX_SECONDS:g} s: {clip.sentence!r}"
            )
        if clip.sample_rate != SAMPLE_RATE or clip.channels != 1:
            problems.append(
                f"{locale}/{clip.path}: {clip.sample_rate} Hz / {clip.channels} ch, "
                f"expected {SAMPLE_RATE} Hz mono"
            )
    return problems


def write_tsv(spec: LocaleSpec, clips: list[Clip], tsv_file: Path) -> None:
    """Write the Common Voice style ``test.tsv`` for one locale."""
    cid = client_id(spec.locale)
    with tsv_file.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
        writer.writerow(TSV_COLUMNS)
        for clip in clips:
            writer.writerow(
                (cid, clip.path, clip.sentence, UP_VOTES, DOWN_VOTES,
                 "", "", "", spec.locale, "")
            )


def write_readme(out_tmp: Path, results: dict[str, list[Clip]], versions: dict[str, str]) -> None:
    """Write ``README.md`` describing the corpus, its provenance and license."""
    rows = []
    for spec in LOCALES:
        clips = results[spec.locale]
        total = sum(c.seconds for c in clips)
        rows.append(
            f"| `{spec.locale}` | {len(clips)} | {total:.1f} | "
            f"`-v {spec.voice} -s {spec.speed_wpm} -p {spec.pitch} -a {spec.amplitude} "
            f"-g {spec.word_gap}` |"
        )
    ffmpeg_args = " ".join(FFMPEG_OUTPUT_ARGS)
    text = f"""# commonvoice-mini (synthetic fixture corpus)

A tiny speech corpus laid out exactly like a Mozilla Common Voice release
(`<locale>/test.tsv` + `<locale>/clips/*.mp3`, 48 kHz mono MP3) so that
asrbench's Common Voice loader and the whole benchmark pipeline can run
offline, in tests and in CI.

**This is not Common Voice data.** Every sentence was written for the asrbench
project, and all audio was synthesized with eSpeak NG. Scores on this corpus
are a *regression signal only* (did a change make things better or worse?);
they make no claim about real-world recognition accuracy.

| locale | clips | audio seconds* | espeak-ng voice/prosody |
|---|---|---|---|
{chr(10).join(rows)}

\\* as reported by ffprobe, which counts ~50 ms of MP3 encoder padding per
clip; gapless decoders (libsndfile/mpg123) report slightly less.

## How it was generated

```
python scripts/make_fixture_corpus.py --out asrbench/corpus/commonvoice-mini
```

1. `espeak-ng <voice/prosody above> -b 1 -f sentence.txt -w clip.wav`
2. `ffmpeg -i clip.wav {ffmpeg_args} clip.mp3`
3. Every clip is checked to be 48 kHz, mono and {MIN_SECONDS:g}-{MAX_SECONDS:g} s long.

Tools used for this copy: {versions['espeak-ng']}; {versions['ffmpeg']}.
With the same tool versions a rerun is byte-identical. Clip IDs
(`common_voice_<locale>_fixture_NNNN.mp3`) are the 1-based position of the
sentence in the script, which is append-only, so IDs are stable.

`test.tsv` uses the Common Voice columns; `client_id` is a fixed synthetic
hash (one per locale), `age`/`gender`/`accent`/`segment` are empty and the
vote columns are constants.

## License

The sentences are the asrbench project's own text, released under the same
license as the rest of the repository. The audio is machine generated by
eSpeak NG from that text. Use it for regression testing only.
"""
    (out_tmp / "README.md").write_text(text, encoding="utf-8")


def directory_size(path: Path) -> int:
    """Return the total size in bytes of all regular files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse to delete ``out`` if it does not look like a generated corpus."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FixtureError(f"--out {out} exists and is not a directory")
    expected = {spec.locale for spec in LOCALES} | {"README.md"}
    unexpected = sorted(p.name for p in out.iterdir() if p.name not in expected)
    if unexpected and not force:
        raise FixtureError(
            f"refusing to delete {out}: it contains unexpected entries {unexpected} "
            "(pass --force to delete it anyway)"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command line arguments."""
    parser = argparse.ArgumentParser(
        description=(
            "Generate the synthetic Common Voice style fixture corpus "
            "(espeak-ng + ffmpeg). The output directory is deleted and rewritten."
        ),
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help=f"output directory (default: {DEFAULT_OUT.relative_to(REPO_ROOT)} in the repository)",
    )
    parser.add_argument(
        "--force", action="store_true",
        help="delete --out even if it contains files this script did not create",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: generate, validate and install the corpus; return an exit code."""
    args = parse_args(argv)
    check_tools()
    out: Path = args.out.resolve()
    try:
        check_out_dir(out, args.force)
        versions = {
            "espeak-ng": tool_version(["espeak-ng", "--version"]),
            "ffmpeg": tool_version(["ffmpeg", "-hide_banner", "-version"]),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        results: dict[str, list[Clip]] = {}
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-", dir=out.parent) as tmp:
            out_tmp = Path(tmp) / "corpus"
            work_dir = Path(tmp) / "work"
            work_dir.mkdir()
            problems: list[str] = []
            for spec in LOCALES:
                locale_dir = out_tmp / spec.locale
                clips = synthesize_locale(spec, locale_dir, work_dir)
                problems += validate(spec.locale, clips)
                write_tsv(spec, clips, locale_dir / "test.tsv")
                results[spec.locale] = clips
            if problems:
                raise FixtureError(
                    f"{len(problems)} clip(s) failed validation; output left unchanged:\n  "
                    + "\n  ".join(problems)
                )
            write_readme(out_tmp, results, versions)
            if out.exists():
                shutil.rmtree(out)
            os.replace(out_tmp, out)
    except FixtureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    print(f"\nwrote {out}")
    all_seconds = [c.seconds for clips in results.values() for c in clips]
    for spec in LOCALES:
        clips = results[spec.locale]
        secs = [c.seconds for c in clips]
        size = directory_size(out / spec.locale)
        print(
            f"  {spec.locale}: {len(clips)} clips, {sum(secs):.1f} s audio "
            f"(min {min(secs):.2f} s, max {max(secs):.2f} s), {size / 1e6:.2f} MB"
        )
    print(
        f"  total: {len(all_seconds)} clips, {sum(all_seconds):.1f} s audio, "
        f"{directory_size(out) / 1e6:.2f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
