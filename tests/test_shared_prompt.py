"""The prompt-once forward of DPO and SimPO: one packed row per pair gives TRL's per-token outputs, logits and
gradients, leaves layouts it does not know to the model, and trains to TRL's losses."""

import pytest
import torch

from types import SimpleNamespace

from w2s_trl.training.shared_prompt import PromptOnceForward, pack_pairs, packing_blocker

FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def fused_lora_model(fields=FIELDS, seed=0):
    """The tiny LM with TRL's fused head (computing `fields`) and a LoRA adapter whose B is random (a fresh adapter is
    the identity); the same weights for the same seed."""
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    from w2s_trl.models import load_causal_lm

    base = load_causal_lm("tiny:causal-lm")
    add_fused_lm_head(base, outputs=fields)
    torch.manual_seed(seed)  # LoRA's A matrices
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


@pytest.fixture(scope="module")
def fused_lora():
    return fused_lora_model()


def trl_batch(lengths, seed=1):
    """TRL's DPO collator on random token ids: (prompt, chosen, rejected) lengths per pair."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    g = torch.Generator().manual_seed(seed)
    examples = [{k: torch.randint(5, 200, (n,), generator=g).tolist() for k, n in
                 zip(("prompt_ids", "chosen_ids", "rejected_ids"), triple)} for triple in lengths]  # fmt: skip
    batch = DataCollatorForPreference(pad_token_id=0)(examples)
    batch["labels"] = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return batch


def forward_and_grads(model, forward, batch):
    model.zero_grad()
    out = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                  fused_lm_head=True, use_cache=False)  # fmt: skip
    (out.log_probs.sum() + out.entropy.sum()).backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture(params=["sdpa", "eager"])
def kernel(request, fused_lora):
    """Both attention kernels packing takes: sdpa (a boolean mask) and eager (an additive float mask)."""
    fused_lora.base_model.model.set_attn_implementation(request.param)
    yield request.param
    fused_lora.base_model.model.set_attn_implementation("sdpa")


def test_packed_pairs_give_trls_per_token_outputs_and_gradients(fused_lora, kernel):
    # prompts of 5, 9 and 1 tokens; chosen shorter and longer than rejected; a one-token response
    assert fused_lora.config._attn_implementation == kernel
    batch = trl_batch([(5, 3, 7), (9, 4, 2), (1, 6, 1)])
    plain, plain_grads = forward_and_grads(fused_lora, fused_lora, batch)
    shared = PromptOnceForward(fused_lora)
    packed, packed_grads = forward_and_grads(fused_lora, shared, batch)
    assert shared.packed
    for name in FIELDS:
        assert getattr(packed, name).shape == getattr(plain, name).shape
        torch.testing.assert_close(getattr(packed, name), getattr(plain, name), atol=1e-5, rtol=1e-5)
    assert plain.log_probs.ne(0).sum() == batch["completion_mask"].sum()  # every response token is scored
    assert plain_grads.keys() == packed_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-4)


def test_the_packed_row_holds_each_prompt_once():
    batch = trl_batch([(5, 3, 7), (9, 4, 2)])
    packed = pack_pairs(batch["input_ids"], batch["attention_mask"], batch["labels"], additive_mask=False)
    assert packed.input_ids.shape == (2, 9 + 4 + 1 + 2)  # the longest pair: prompt, chosen, the repeat, rejected
    ids = batch["input_ids"]
    row = packed.input_ids[0, : 5 + 3 + 1 + 7]
    assert row.tolist() == ids[0, :8].tolist() + [ids[0, 4].item()] + ids[2, 5:12].tolist()
    assert packed.position_ids[0, :16].tolist() == list(range(8)) + [4] + list(range(5, 12))
    mask = packed.attention_mask[0, 0]
    assert not mask[9:16, 4].any() and not mask[9:16, 5:8].any()  # rejected sees neither prompt end nor chosen
    assert mask[9:16, :4].all() and mask[8, 8] and mask[15, 8:16].all()
    assert int(packed.valid.sum()) == int(batch["completion_mask"].sum())


@pytest.mark.parametrize("spoil", ["odd rows", "different prompts", "no prompt"])
def test_layouts_it_does_not_know_run_unchanged(fused_lora, spoil):
    batch = trl_batch([(5, 3, 7), (9, 4, 2)] if spoil != "no prompt" else [(0, 3, 7), (4, 2, 2)])
    if spoil == "odd rows":
        batch = {k: v[:3] for k, v in batch.items()}
    if spoil == "different prompts":
        batch["input_ids"][2, 1] += 1  # pair 0's rejected row has another prompt
    assert pack_pairs(batch["input_ids"], batch["attention_mask"], batch["labels"], additive_mask=False) is None
    shared = PromptOnceForward(fused_lora)
    with torch.no_grad():
        got = shared(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}, fused_lm_head=True)
        want = fused_lora(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}, fused_lm_head=True)
    assert not shared.packed
    torch.testing.assert_close(got.log_probs, want.log_probs, atol=0, rtol=0)


def cpo_batch(lengths, seed=2):
    """TRL's CPO layout: [chosen rows; rejected rows], each prompt + response, right padded; (prompt, chosen,
    rejected) lengths per pair."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for p, c, r in lengths:
        prompt = torch.randint(5, 200, (p,), generator=g)
        rows.append((torch.cat([prompt, torch.randint(5, 200, (c,), generator=g)]),
                     torch.cat([prompt, torch.randint(5, 200, (r,), generator=g)])))  # fmt: skip
    seqs = [chosen for chosen, _ in rows] + [rejected for _, rejected in rows]
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = s, 1
    return ids, mask


def test_simpo_logits_of_the_packed_pairs_are_trls(fused_lora, kernel):
    """CPO/SimPO asks for logits: at every real position of every row they equal the batch's own, and so do the
    gradients of a loss on them."""
    ids, mask = cpo_batch([(5, 3, 7), (9, 4, 2), (1, 6, 1)])
    shared = PromptOnceForward(fused_lora)
    results = []
    for forward in (fused_lora, shared):
        fused_lora.zero_grad()
        logits = forward(ids, attention_mask=mask, use_cache=False).logits
        real = logits[mask.bool()]
        real.logsumexp(-1).sum().backward()
        grads = {n: p.grad.clone() for n, p in fused_lora.named_parameters() if p.grad is not None}
        results.append((real.detach(), grads))
    assert shared.packed
    (plain, plain_grads), (packed, packed_grads) = results
    torch.testing.assert_close(packed, plain, atol=1e-5, rtol=1e-5)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("recipe_name", ["dpo_weak_rm.yaml", "simpo_density_ratio.yaml"])
def test_training_reaches_trls_losses_with_each_prompt_once(tmp_path, recipe_name):
    """DPO (fused head) and SimPO (TRL's CPO trainer, logits), fp32, with share_prompt on and off: the same loss on a
    fixed batch, the same training losses over three steps, and the policy sees one row per pair when shared."""
    from tests.test_trainers import labelled_rows, perturb_adapter, recipe_for
    from w2s_trl.align import make_trainer

    rows = labelled_rows(12)
    runs = {}
    for share in (False, True):
        recipe = recipe_for(recipe_name, f"align.share_prompt={str(share).lower()}", "align.args.max_steps=3",
                            "align.args.per_device_train_batch_size=4", "align.args.logging_steps=1")  # fmt: skip
        trainer, _ = make_trainer(recipe, rows, str(tmp_path / str(share)), "t", max_length=256)
        assert type(trainer).__name__.startswith("SharedPrompt") == share
        perturb_adapter(trainer.model)
        batch = next(iter(trainer.get_train_dataloader()))
        seen = []  # rows per policy forward (CPO passes input_ids by position)
        hook = trainer.model.register_forward_hook(
            lambda m, args, kwargs, out: seen.append(len(kwargs["input_ids"] if "input_ids" in kwargs else args[0])),
            with_kwargs=True,
        )
        with torch.no_grad():
            fixed = trainer.compute_loss(trainer.model, batch).item()
        trainer.train()
        hook.remove()
        runs[share] = fixed, [h["loss"] for h in trainer.state.log_history if "loss" in h], set(seen)
        packed = [h["prompt_once/packed"] for h in trainer.state.log_history if "prompt_once/packed" in h]
        assert packed == ([1.0] * 3 if share else [])  # every training step ran packed, and the logs say so
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-5)
    assert len(runs[True][1]) == 3 and runs[True][1] == pytest.approx(runs[False][1], rel=1e-4)
    assert runs[False][2] == {8} and runs[True][2] == {4}  # 4 pairs: 8 rows in TRL's layout, 4 packed


def test_simpo_runs_the_lm_head_only_where_a_label_reads_it(tmp_path):
    """SimPO's step (TRL's CPO trainer, each prompt once) projects through the LM head only the positions whose logits
    predict a response token, with the log-probs, loss and gradients of TRL's every-position forward."""
    from tests.test_trainers import labelled_rows, perturb_adapter, recipe_for
    from w2s_trl.align import make_trainer

    rows, results = labelled_rows(8), {}
    for share in (True, False):
        recipe = recipe_for("simpo_density_ratio.yaml", f"align.share_prompt={str(share).lower()}",
                            "align.args.per_device_train_batch_size=4")  # fmt: skip
        trainer, _ = make_trainer(recipe, rows, str(tmp_path / str(share)), "t", max_length=256)
        perturb_adapter(trainer.model)
        batch = next(iter(trainer.get_train_dataloader()))
        projected = []
        hook = trainer.model.get_output_embeddings().register_forward_hook(
            lambda m, args, out: projected.append(args[0].shape[:-1].numel()))
        trainer.model.zero_grad()
        chosen, rejected, *_ = trainer.concatenated_forward(trainer.model, batch)
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        hook.remove()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        scored = int((batch["chosen_labels"][:, 1:] != -100).sum() + (batch["rejected_labels"][:, 1:] != -100).sum())
        results[share] = chosen.detach(), rejected.detach(), loss.item(), grads, projected, scored
    shared, plain = results[True], results[False]
    assert shared[4] == [shared[5]] * 2  # both forwards: exactly the scored positions (TRL: every position of 8 rows)
    assert plain[4][0] > 2 * shared[5]
    torch.testing.assert_close(shared[0], plain[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared[1], plain[1], rtol=1e-5, atol=1e-5)
    assert shared[2] == pytest.approx(plain[2], rel=1e-5)
    for name, grad in plain[3].items():
        torch.testing.assert_close(shared[3][name], grad, rtol=1e-4, atol=1e-6)


def test_logits_at_kept_positions_packed_or_not(fused_lora, kernel):
    """`keep`: the logits of exactly those positions of TRL's CPO batch, in its row-major order, whether the pairs
    run packed or in TRL's two rows (a model packing refuses)."""
    ids, mask = cpo_batch([(5, 3, 7), (9, 4, 2), (1, 6, 1)])
    keep = torch.zeros_like(ids, dtype=torch.bool)
    keep[:, :-1] = mask[:, 1:].bool()
    keep[:, :4] = False  # some prompt positions, and all of the 1-token prompt's response
    with torch.no_grad():
        full = fused_lora(ids, attention_mask=mask, use_cache=False).logits
        for forward in (PromptOnceForward(fused_lora), PromptOnceForward(fused_lora, blocker="refused")):
            logits = forward(ids, attention_mask=mask, use_cache=False, keep=keep).logits
            assert forward.packed == (forward.blocker is None)
            assert logits.shape == (int(keep.sum()), full.shape[-1])
            torch.testing.assert_close(logits, full[keep], atol=1e-5, rtol=1e-5)


def test_head_at_cuts_the_logits_after_the_fact_when_the_head_is_no_module():
    """A model whose LM head is not a module it calls still gets the positions asked for, from its full logits."""
    from w2s_trl.training.shared_prompt import head_at

    logits = torch.arange(24.0).reshape(2, 3, 4)

    class NoHead(torch.nn.Module):
        def get_output_embeddings(self):
            return None

        def forward(self):
            return SimpleNamespace(logits=logits)

    keep = torch.tensor([[False, True, True], [True, False, False]])
    out = head_at(NoHead(), keep.nonzero(as_tuple=True), NoHead())
    assert torch.equal(out.logits, logits[keep])


def test_models_a_packed_row_would_change_are_left_to_trls_layout(fused_lora):
    """A sliding window would see past its window in a packed row, recurrent or convolution layers would carry the
    chosen tokens into the rejected ones, and some kernels take no custom mask: such models run unpacked."""
    def blocker(**fields):
        config = SimpleNamespace(model_type="llama", _attn_implementation="sdpa", sliding_window=None)
        return packing_blocker(SimpleNamespace(config=SimpleNamespace(**{**vars(config), **fields})))

    assert packing_blocker(fused_lora) is None and blocker() is None and blocker(_attn_implementation="eager") is None
    assert blocker(model_type="qwen2", sliding_window=4096, use_sliding_window=False) is None
    assert "sliding-window" in blocker(model_type="mistral", sliding_window=4)
    assert "full attention" in blocker(model_type="qwen3", layer_types=["full_attention", "sliding_attention"])
    assert "chunked" in blocker(attention_chunk_size=8192)
    assert "not among" in blocker(model_type="lfm2")
    assert "custom mask" in blocker(_attn_implementation="flash_attention_2")

    batch = trl_batch([(5, 3, 7), (9, 4, 2)])
    shared = PromptOnceForward(fused_lora, blocker(model_type="mistral", sliding_window=4))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        got, want = shared(**inputs, fused_lm_head=True), fused_lora(**inputs, fused_lm_head=True)
    assert not shared.packed and "sliding-window" in shared.reason
    torch.testing.assert_close(got.log_probs, want.log_probs, atol=0, rtol=0)
