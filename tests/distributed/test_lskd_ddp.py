"""LSKD under 2 processes (gloo, CPU): ITC negatives gathered with gradient, hard negatives mined across processes.

The per-process ITC loss on the local rows against the *global* batch, averaged over processes
(as DDP averages gradients), must equal the 1-process loss on the doubled batch: values and
gradients agree to 1e-5. A DDP-wrapped student then takes a few steps and both processes keep
identical parameters equal to a 1-process run on the doubled batch (ITC + ITG; ITM samples
random negatives, so it is checked for shape and admissibility only).
"""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _global_inputs():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(8, 3, 6, generator=g), dim=-1)
    txt = F.normalize(torch.randn(8, 6, generator=g), dim=-1)
    return img, txt


def _model_inputs():
    g = torch.Generator().manual_seed(1)
    px = torch.randn(8, 3, 32, 32, generator=g)
    ids = torch.randint(5, 100, (8, 6), generator=g)
    ids[:, 0] = 2
    return px, ids, torch.ones_like(ids)


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from hf_vcr.losses.lskd import itc_loss, itg_loss
        from hf_vcr.models.configuration_lskd import tiny_student_config
        from hf_vcr.models.modeling_lskd import LskdStudentModel

        img, txt = _global_inputs()
        b = img.shape[0] // world
        local_img = img[rank * b : (rank + 1) * b].clone().requires_grad_()
        local_txt = txt[rank * b : (rank + 1) * b].clone().requires_grad_()
        tau = torch.tensor(0.1, requires_grad=True)
        loss = itc_loss(local_img, local_txt, tau, label_smoothing=0.1)
        loss.backward()
        losses = [torch.zeros(()) for _ in range(world)]
        dist.all_gather(losses, loss.detach())
        dist.all_reduce(tau.grad)
        res = {"loss": torch.stack(losses).mean(), "img_grad": local_img.grad / world, "txt_grad": local_txt.grad / world,
               "tau_grad": tau.grad / world}

        torch.manual_seed(0)
        model = LskdStudentModel(tiny_student_config(decoder_start_token_id=4))
        ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)  # ITM head unused here
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        px, ids, mask = _model_inputs()
        sl = slice(rank * 4, (rank + 1) * 4)
        for _ in range(2):
            out = ddp(pixel_values=px[sl], input_ids=ids[sl], attention_mask=mask[sl], stage1=True, compute_itm=False)
            l = itc_loss(out.image_feats, out.text_feats, out.temperature) + itg_loss(out.itg_logits, out.decoder_input_ids, out.decoder_attention_mask)
            opt.zero_grad()
            l.backward()
            opt.step()
        # ITM mining over both processes' batches
        out = model(pixel_values=px[sl], input_ids=ids[sl], attention_mask=mask[sl], stage1=True, compute_itg=False)
        res["itm_shape"] = tuple(out.itm_logits.shape)
        res["params"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("ddp"))
    mp.start_processes(_worker, args=(2, _free_port(), d), nprocs=2, join=True, start_method="spawn")
    return [torch.load(os.path.join(d, f"rank{r}.pt")) for r in range(2)]


def test_itc_across_processes_equals_single_process_on_global_batch(ranks):
    from hf_vcr.losses.lskd import itc_loss

    img, txt = _global_inputs()
    img.requires_grad_()
    txt.requires_grad_()
    tau = torch.tensor(0.1, requires_grad=True)
    ref = itc_loss(img, txt, tau, label_smoothing=0.1)
    ref.backward()
    assert ranks[0]["loss"].item() == pytest.approx(ref.item(), abs=1e-5)
    got_img = torch.cat([r["img_grad"] for r in ranks])
    got_txt = torch.cat([r["txt_grad"] for r in ranks])
    assert torch.allclose(got_img, img.grad, atol=1e-5)
    assert torch.allclose(got_txt, txt.grad, atol=1e-5)
    assert torch.allclose(ranks[0]["tau_grad"], tau.grad, atol=1e-5)


def test_ddp_student_matches_single_process_doubled_batch(ranks):
    from hf_vcr.losses.lskd import itc_loss, itg_loss
    from hf_vcr.models.configuration_lskd import tiny_student_config
    from hf_vcr.models.modeling_lskd import LskdStudentModel

    torch.manual_seed(0)
    model = LskdStudentModel(tiny_student_config(decoder_start_token_id=4))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    px, ids, mask = _model_inputs()
    for _ in range(2):
        # DDP averages the two processes' gradients: the per-process ITG means average to the global mean
        out = model(pixel_values=px, input_ids=ids, attention_mask=mask, stage1=True, compute_itm=False)
        l_itg = 0.5 * (itg_loss(out.itg_logits[:4], out.decoder_input_ids[:4], out.decoder_attention_mask[:4])
                       + itg_loss(out.itg_logits[4:], out.decoder_input_ids[4:], out.decoder_attention_mask[4:]))
        l = itc_loss(out.image_feats, out.text_feats, out.temperature) + l_itg
        opt.zero_grad()
        l.backward()
        opt.step()
    ref = model.state_dict()
    for r in ranks:
        for k, v in r["params"].items():
            assert torch.allclose(v, ref[k], atol=1e-5), k
    assert ranks[0]["itm_shape"] == (12, 2)
