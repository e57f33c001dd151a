"""Any AutoModelForSpeechSeq2Seq, not only Whisper: tiny random models built here, offline.

- a Speech2Text model (log-mel `input_features` with an attention mask) with a sentencepiece
  tokenizer trained on the corpus sentences;
- a SpeechEncoderDecoderModel (a wav2vec2 encoder on raw `input_values` + a BERT decoder) with
  a word-level tokenizer of the corpus words.

Each runs through `asrbench run` at batch size 4 on 5 clips (a partial last batch) and must give
what stock `model.generate()` gives on the same padded batches; a --language or --task the
model has no tokens for is refused in one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from factories import embedded_rows

from asrbench.cli.main import main
from asrbench.config.settings import EMBEDDED_CORPUS

CLIPS, BATCH, MAX_LENGTH = 5, 4, 20
RUN = ["run", "--dataset-config", "en", "--limit", str(CLIPS), "--batch-size", str(BATCH),
       "--passes", "1", "--generation-max-length", str(MAX_LENGTH), "--no-progress",
       "--device", "cpu"]


def _sentences() -> list[str]:
    return [row["sentence"] for row in embedded_rows("en")]


def _speech2text(path: Path) -> Path:
    """A tiny random Speech2Text model, its feature extractor and a sentencepiece tokenizer
    trained on the corpus sentences (fairseq's special ids: <s> 0, <pad> 1, </s> 2, <unk> 3)."""
    import sentencepiece as spm
    from transformers import (
        Speech2TextConfig,
        Speech2TextFeatureExtractor,
        Speech2TextForConditionalGeneration,
        Speech2TextProcessor,
        Speech2TextTokenizer,
    )

    text = path / "sentences.txt"
    text.write_text("\n".join(_sentences()) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(path / "spm"), vocab_size=120, model_type="unigram",
        bos_id=0, pad_id=1, eos_id=2, unk_id=3, hard_vocab_limit=False, minloglevel=2)
    pieces = spm.SentencePieceProcessor(model_file=str(path / "spm.model"))
    vocab = {pieces.id_to_piece(i): i for i in range(pieces.get_piece_size())}
    (path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = Speech2TextTokenizer(vocab_file=str(path / "vocab.json"),
                                     spm_file=str(path / "spm.model"))
    extractor = Speech2TextFeatureExtractor(feature_size=40, num_mel_bins=40,
                                            return_attention_mask=True)
    config = Speech2TextConfig(
        vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, conv_channels=16, conv_kernel_sizes=[5, 5],
        input_feat_per_channel=40, max_source_positions=1024, max_target_positions=64,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    torch.manual_seed(0)
    model = Speech2TextForConditionalGeneration(config).eval()
    out = path / "speech2text"
    model.save_pretrained(out)
    Speech2TextProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    return out


def _wav2vec2_bert(path: Path) -> Path:
    """A tiny random wav2vec2 encoder + BERT decoder, a word-level tokenizer of the corpus
    words and a wav2vec2 extractor that makes an attention mask (layer-norm feature encoder)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import (
        BertConfig,
        PreTrainedTokenizerFast,
        SpeechEncoderDecoderConfig,
        SpeechEncoderDecoderModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Processor,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    words = sorted({w for s in _sentences() for w in re.findall(r"\w+|[^\w\s]", s.lower())})
    vocab = {token: i for i, token in enumerate(specials + words)}
    backend = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]",
                                        unk_token="[UNK]", bos_token="[CLS]", eos_token="[SEP]")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    encoder = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=(16, 16, 16, 16), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 4, 4, 4),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer", do_stable_layer_norm=True)
    decoder = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                         is_decoder=True, add_cross_attention=True)
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = vocab["[CLS]"]
    config.pad_token_id = vocab["[PAD]"]
    config.eos_token_id = vocab["[SEP]"]
    torch.manual_seed(0)
    model = SpeechEncoderDecoderModel(config=config).eval()
    generation = model.generation_config
    generation.decoder_start_token_id = vocab["[CLS]"]
    generation.pad_token_id = vocab["[PAD]"]
    generation.eos_token_id = vocab["[SEP]"]
    out = path / "wav2vec2-bert"
    model.save_pretrained(out)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    return out


BUILDERS = {"speech2text": _speech2text, "wav2vec2-bert": _wav2vec2_bert}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def tiny_model(request, tmp_path_factory) -> Path:
    return BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


def _clips() -> tuple[list[str], list]:
    """The first CLIPS clips of the embedded English corpus: ids and 16 kHz audio."""
    from asrbench.measure.data import load_split

    split = load_split(str(EMBEDDED_CORPUS), "en", "test", "sentence", 30.0, CLIPS,
                       progress=False)
    return [u.id for u in split.utterances], [u.audio for u in split.utterances]


def _stock(model_dir: Path, audio: list) -> list[str]:
    """Stock transformers: the processor pads each batch of 4 (longest clips first, as the
    run batches them) with its attention mask; greedy generate() to the same length cap."""
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForSpeechSeq2Seq.from_pretrained(model_dir).eval()
    order = sorted(range(len(audio)), key=lambda i: -len(audio[i]))
    texts: dict[int, str] = {}
    for start in range(0, len(order), BATCH):
        rows = order[start:start + BATCH]
        inputs = processor.feature_extractor([audio[i] for i in rows], sampling_rate=16000,
                                             padding=True, return_attention_mask=True,
                                             return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, do_sample=False, num_beams=1, max_length=MAX_LENGTH)
        decoded = processor.tokenizer.batch_decode(out, skip_special_tokens=True)
        texts.update({i: t.strip() for i, t in zip(rows, decoded)})
    return [texts[i] for i in range(len(audio))]


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory) -> dict:
    """The run of the tiny model on 5 clips at batch size 4, from its JSON report."""
    report = tmp_path_factory.mktemp("report") / "report.json"
    assert main(RUN + ["--model", str(tiny_model), "--report", str(report)]) == 0
    return json.loads(report.read_text(encoding="utf-8"))["runs"][0]


def test_a_partial_last_batch_gives_what_stock_generate_gives(tiny_model, tiny_run):
    run = tiny_run
    got = {u["id"]: u["prediction"] for u in run["utterances"]}
    ids, audio = _clips()
    assert list(got) == ids
    expected = _stock(tiny_model, audio)
    assert any(expected)  # the random model emits text, so the comparison says something
    assert [got[i] for i in ids] == expected
    assert run["config"]["language"] == "english"  # the locale's language: scoring only


def test_the_stock_reference_agrees_with_the_run(tiny_model, tiny_run):
    """The agreement check the product runs (stock generate(), fp32, CPU, batches of 8 in
    split order): padding with the attention mask does not change a transcript."""
    from asrbench.measure.reference import ReferenceRequest, agreement, decode

    request = ReferenceRequest(model=str(tiny_model), dataset=str(EMBEDDED_CORPUS),
                               dataset_config="en", split="test", text_column="sentence",
                               max_duration=30.0, utterances=CLIPS, language="english",
                               task="transcribe", generation_max_length=MAX_LENGTH)
    ids, transcripts = decode(request)
    result = agreement({u["id"]: u["prediction"] for u in tiny_run["utterances"]},
                       dict(zip(ids, transcripts)))
    assert (result.utterances, result.identical) == (CLIPS, CLIPS)


@pytest.mark.parametrize("flag,value", [("--language", "en"), ("--task", "translate")])
def test_a_language_or_task_the_model_cannot_take_is_refused(tiny_model, tmp_path, capsys,
                                                              flag, value):
    report = tmp_path / "report.json"
    code = main(RUN + ["--model", str(tiny_model), flag, value, "--report", str(report)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("asrbench: error: ")
    assert f"{flag} {value} needs a model with" in err[0] and str(tiny_model) in err[0]
    assert err[0].endswith(f"has none: drop {flag}")
    assert not report.exists()


def test_static_shapes_are_refused_for_a_model_without_fixed_windows(tiny_model, tmp_path,
                                                                    capsys):
    """--ignore-eos needs static shapes; only Whisper's 30 s windows give them."""
    code = main(RUN + ["--model", str(tiny_model), "--ignore-eos",
                       "--report", str(tmp_path / "report.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "is not a Whisper model: static shapes" in err[0]
