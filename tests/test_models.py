"""Models: the tiny Llama, the word-level tokenizer, save/load, LoRA, generation and LM loss."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoTokenizer, LlamaForCausalLM

from lit_knowledge.config import LoraConfig, ModelConfig, TinyModelConfig, WorldConfig
from lit_knowledge.data.prompts import qa_prompt
from lit_knowledge.data.world import World
from lit_knowledge.errors import UserError
from lit_knowledge.models.build import build_tiny_llama, load_pretrained, num_parameters, save_model
from lit_knowledge.models.generate import generate_answers, lm_loss
from lit_knowledge.models.lora import add_lora, load_adapter, merge_lora, save_adapter
from lit_knowledge.models.tokenizer import SPECIAL_TOKENS, train_word_tokenizer

SENTENCE = "ada abbott was born in 1950 in velmora . ada abbott works for norcrest labs as a researcher in chemistry ."
QUESTION = qa_prompt("where was ada abbott born ?")


@pytest.fixture(scope="module")
def world():
    return World(OmegaConf.structured(WorldConfig(num_background=20, num_organisations=8, num_steps=2,
                                                  entities_per_step=3, num_edits=10)))


@pytest.fixture(scope="module")
def tokenizer(world):
    return train_word_tokenizer(world.texts(), 4096)


@pytest.fixture(scope="module")
def tiny_cfg():
    return OmegaConf.structured(TinyModelConfig(num_layers=2, hidden_size=32, num_heads=4, num_kv_heads=2,
                                                intermediate_size=64, max_position_embeddings=128))


@pytest.fixture
def model(tokenizer, tiny_cfg):
    torch.manual_seed(0)
    return build_tiny_llama(tiny_cfg, tokenizer).eval()


@pytest.fixture
def ids(tokenizer):
    return torch.tensor([tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]])


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


# ------------------------------------------------------------------------------------------ tiny model


def test_tiny_llama_forward_shape(model, tokenizer, tiny_cfg, ids):
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.num_hidden_layers == tiny_cfg.num_layers
    assert model.config.hidden_size == tiny_cfg.hidden_size
    assert model.config.num_key_value_heads == tiny_cfg.num_kv_heads
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.eos_token_id == tokenizer.eos_token_id
    out = logits(model, ids)
    assert out.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(out).all()
    batch = torch.cat([ids, ids.flip(1)])
    assert logits(model, batch).shape == (2, ids.shape[1], len(tokenizer))
    assert num_parameters(model) > 0 and num_parameters(model, trainable_only=True) == num_parameters(model)


def test_tiny_llama_rejects_indivisible_heads(tokenizer):
    bad = OmegaConf.structured(TinyModelConfig(hidden_size=30, num_heads=4))
    with pytest.raises(UserError, match="model.tiny.hidden_size=30"):
        build_tiny_llama(bad, tokenizer)


# ------------------------------------------------------------------------------------------ tokenizer


def test_tokenizer_special_tokens_and_vocab(tokenizer, world):
    for attr, token in SPECIAL_TOKENS.items():
        assert getattr(tokenizer, attr) == token
    assert tokenizer.padding_side == "left"
    assert len({tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id,
                tokenizer.unk_token_id}) == 4
    # the world's whole vocabulary is covered: no unknown token in any world text
    for text in world.texts():
        assert tokenizer.unk_token_id not in tokenizer(text, add_special_tokens=False)["input_ids"], text


def test_tokenizer_vocab_size_bound(world):
    small = train_word_tokenizer(world.texts(), 50)
    assert len(small) <= 50


def test_tokenizer_round_trip(tokenizer):
    ids = tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(SENTENCE.split())  # word level: one id per word / punctuation mark
    assert tokenizer.unk_token_id not in ids
    text = tokenizer.decode(ids)
    # the decoder tidies the space before punctuation; the words and their order are kept
    assert text == SENTENCE.replace(" .", ".")
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    # lower-casing and punctuation splitting
    assert tokenizer("Ada Abbott.", add_special_tokens=False)["input_ids"] == ids[:2] + [ids[8]]
    question = tokenizer("where was ada abbott born ?", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(question) == "where was ada abbott born?"
    # the prompt format's own words are in the vocabulary
    assert tokenizer.unk_token_id not in tokenizer(QUESTION, add_special_tokens=False)["input_ids"]


def test_token_ids_match_the_tokenizers_own_call(tokenizer):
    from lit_knowledge.data.prompts import token_ids

    for text in (SENTENCE, QUESTION, " 1991", "\n" + qa_prompt("where was ada abbott born ?"), "Ada Abbott.", ""):
        assert token_ids(tokenizer, text) == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_tokenizer_save_pretrained_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    for text in (SENTENCE, QUESTION, "Unknownword zzz ."):
        assert loaded(text, add_special_tokens=False)["input_ids"] == tokenizer(text, add_special_tokens=False)["input_ids"]
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(loaded) == len(tokenizer)
    for attr in SPECIAL_TOKENS:
        assert getattr(loaded, f"{attr}_id") == getattr(tokenizer, f"{attr}_id")
    ids = tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]
    assert loaded.decode(ids) == tokenizer.decode(ids)


# ------------------------------------------------------------------------------------------ save / load


def test_save_model_and_load_pretrained(model, tokenizer, ids, tmp_path):
    save_model(model, tokenizer, tmp_path / "m")
    assert (tmp_path / "m" / "config.json").is_file()
    assert (tmp_path / "m" / "tokenizer.json").is_file()
    cfg = OmegaConf.structured(ModelConfig(name=str(tmp_path / "m")))
    loaded, loaded_tok = load_pretrained(cfg)
    loaded.eval()
    assert torch.equal(logits(loaded, ids), logits(model, ids))
    assert loaded_tok(SENTENCE, add_special_tokens=False)["input_ids"] == ids[0].tolist()
    assert loaded_tok.padding_side == "left" and loaded_tok.pad_token_id == tokenizer.pad_token_id
    # an explicit path argument wins over model.name
    other, _ = load_pretrained(OmegaConf.structured(ModelConfig(name="ignored")), str(tmp_path / "m"))
    assert torch.equal(logits(other.eval(), ids), logits(model, ids))


def test_load_pretrained_missing_is_a_user_error(tmp_path):
    cfg = OmegaConf.structured(ModelConfig(name=str(tmp_path / "nothing_here")))
    with pytest.raises(UserError) as info:
        load_pretrained(cfg)
    assert "nothing_here" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="local cache"):
        load_pretrained(OmegaConf.structured(ModelConfig(name="no-such-org/no-such-model-xyz")))


# ------------------------------------------------------------------------------------------ LoRA


@pytest.fixture
def lora_cfg():
    return OmegaConf.structured(LoraConfig(enabled=True, r=4, alpha=8))


def one_step(model, ids):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    model.eval()


def test_add_lora_only_adapter_trainable(model, lora_cfg):
    total = num_parameters(model)
    peft_model = add_lora(model, lora_cfg)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable
    assert all("lora_" in n for n in trainable), trainable
    # every target module got an adapter
    for target in lora_cfg.target_modules:
        assert any(f"{target}.lora_A" in n for n in trainable), target
    assert 0 < num_parameters(peft_model, trainable_only=True) < total


def test_lora_lifecycle(model, tokenizer, lora_cfg, ids, tmp_path):
    pristine = copy.deepcopy(model)
    base_out = logits(model, ids)
    peft_model = add_lora(model, lora_cfg)
    peft_model.eval()
    # B = 0 at initialisation: the adapter does not change the output
    assert torch.equal(logits(peft_model, ids), base_out)
    one_step(peft_model, ids)
    adapted = logits(peft_model, ids)
    assert not torch.allclose(adapted, base_out, atol=1e-4)
    # base weights were not trained
    base_weights = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
                    for n, p in peft_model.named_parameters() if "lora_" not in n}
    for n, p in pristine.named_parameters():
        assert torch.equal(base_weights[n], p), n

    # save / load the adapter onto a fresh copy of the base
    save_adapter(peft_model, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    reloaded = load_adapter(copy.deepcopy(pristine), tmp_path / "adapter").eval()
    torch.testing.assert_close(logits(reloaded, ids), adapted, atol=1e-5, rtol=0)

    # merge: a plain model whose output is the adapted output
    merged = merge_lora(peft_model)
    assert isinstance(merged, LlamaForCausalLM)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert num_parameters(merged) == num_parameters(pristine)
    torch.testing.assert_close(logits(merged.eval(), ids), adapted, atol=1e-5, rtol=0)


def test_merge_lora_of_a_plain_model_is_identity(model):
    assert merge_lora(model) is model


def test_save_adapter_needs_a_peft_model(model, tmp_path):
    with pytest.raises(ValueError):
        save_adapter(model, tmp_path / "a")


def test_bad_target_modules(model):
    bad = OmegaConf.structured(LoraConfig(enabled=True, target_modules=["q_proj", "qkv_proj"]))
    with pytest.raises(UserError) as info:
        add_lora(model, bad)
    msg = str(info.value)
    assert "qkv_proj" in msg and "q_proj" in msg and "\n" not in msg
    assert not any("lora_" in n for n, _ in model.named_parameters())  # the model was left alone


# ------------------------------------------------------------------------------------------ generation and loss


def test_generate_answers(model, tokenizer):
    prompts = [QUESTION, qa_prompt("when was ada abbott born ?", SENTENCE), "velmora"]
    model.train()
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=3, batch_size=2)
    assert isinstance(answers, list) and len(answers) == len(prompts)
    assert all(isinstance(a, str) and "\n" not in a for a in answers)
    assert model.training  # the training mode is restored
    # greedy: deterministic, and batching does not change the answers (left padding)
    assert generate_answers(model, tokenizer, prompts, max_new_tokens=3, batch_size=1) == answers
    assert generate_answers(model, tokenizer, [], max_new_tokens=3) == []


def test_lm_loss(model, tokenizer):
    texts = [SENTENCE, "velmora is a city .", QUESTION]
    loss = lm_loss(model, tokenizer, texts, batch_size=2)
    assert isinstance(loss, float) and loss > 0
    # a random model is near uniform over the vocabulary
    assert abs(loss - torch.log(torch.tensor(float(len(tokenizer)))).item()) < 1.5
    assert lm_loss(model, tokenizer, texts, batch_size=1) == pytest.approx(loss, rel=1e-4)
    assert lm_loss(model, tokenizer, []) is None


def test_dialogue_scores_answers_only_unless_asked_to_score_prompts(tokenizer):
    from lit_knowledge.data.prompts import IGNORE, encode_dialogue

    qa = [("where was ada born ?", "paris"), ("what does ada study ?", "music")]
    answers_only = encode_dialogue(tokenizer, "ada was born in paris .", qa, 256)
    everything = encode_dialogue(tokenizer, "ada was born in paris .", qa, 256, score_prompts=True)
    assert answers_only["input_ids"] == everything["input_ids"]
    assert everything["labels"] == everything["input_ids"]
    scored = [t for t in answers_only["labels"] if t != IGNORE]
    assert len(scored) == 4 and scored[1] == scored[3] == tokenizer.eos_token_id  # two one-word answers, each + eos


def test_evaluating_restores_the_models_mode_on_an_error_too():
    from lit_knowledge.models.modes import evaluating

    model = torch.nn.Linear(2, 2).train()
    with evaluating(model):
        assert not model.training
    assert model.training
    try:
        with evaluating(model):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert model.training
    with evaluating(model.eval()):
        pass
    assert not model.training
