"""Where int8's error comes from: m3search's int8 linear layers simulated in torch (the
formulas of Sources/CM3Kernels/gemm_int8.c: per-output-channel symmetric int8 weights,
per-token asymmetric uint8 activations) on a BGE-M3-layout model, one layer kind at a time,
against the float32 forward. Prints the mean and min dense (CLS) cosine vs float32.

    /work/venv/bin/python Benchmarks/int8_sim.py MODEL_DIR [SEQS] [TOKENS] [CONFIG,...]

Configs (see `configs` below): all_i8, up_bf16 (the FFN up-projection in bf16), up_fold
(LayerNorm gamma folded into W_up, beta into its bias, x-hat quantized), up_fold_sym,
up_qkv_fold, up_res3 / up_xres / up_wres (two-part int8 FFN up: three passes, x two-part, W
two-part; see two_part), up_wonly / up_aonly (only W_up / only its input quantized), only_* (one layer
kind int8, the rest float32). Token ids are uniform random (seed 0).
"""
import sys, math, torch, json
torch.set_num_threads(2)
from safetensors.torch import load_file
path = sys.argv[1]
cfg = json.load(open(path + '/config.json'))
try: sd = load_file(path + '/model.safetensors')
except Exception: sd = torch.load(path + '/pytorch_model.bin', map_location='cpu')
sd = {k.removeprefix('roberta.'): v.float() for k, v in sd.items()}
H, L, nh = cfg['hidden_size'], cfg['num_hidden_layers'], cfg['num_attention_heads']
eps = cfg['layer_norm_eps']

def wq(W):  # per output channel symmetric int8
    s = W.abs().amax(1, keepdim=True) / 127
    s[s == 0] = 1
    return torch.clamp(torch.round(W / s), -127, 127) * s

def aq_asym(x):
    mn = torch.clamp(x.amin(-1, keepdim=True), max=0); mx = torch.clamp(x.amax(-1, keepdim=True), min=0)
    s = (mx - mn) / 255; s[s == 0] = 1
    z = torch.clamp(torch.round(-mn / s), 0, 255)
    q = torch.clamp(torch.round(x / s) + z, 0, 255)
    return (q - z) * s

def aq_sym(x):
    s = x.abs().amax(-1, keepdim=True) / 127; s[s == 0] = 1
    return torch.clamp(torch.round(x / s), -127, 127) * s

def bf16(x): return x.to(torch.bfloat16).float()

cache = {}
def Wget(name, mode):
    key = (name, mode)
    if key not in cache:
        W = sd[name]
        cache[key] = wq(W) if mode == 'i8' else (bf16(W) if mode == 'bf16' else W)
    return cache[key]

def lin(x, name, mode, act='asym'):
    W = Wget(name + '.weight', mode); b = sd[name + '.bias']
    if mode == 'i8': x = aq_asym(x) if act == 'asym' else aq_sym(x)
    elif mode == 'bf16': x = bf16(x)
    return x @ W.T + b

def ln_hat(x):
    m = x.mean(-1, keepdim=True); v = ((x - m) ** 2).mean(-1, keepdim=True)
    return (x - m) / torch.sqrt(v + eps)

def forward(ids, modes):
    # modes: dict layer-kind -> 'f32' | 'bf16' | 'i8' ; 'up_scheme': how FFN up input is made
    T = ids.shape[1]
    pos = torch.arange(T) + 2
    x = sd['embeddings.word_embeddings.weight'][ids] + sd['embeddings.position_embeddings.weight'][pos] + sd['embeddings.token_type_embeddings.weight'][0]
    g, b = sd['embeddings.LayerNorm.weight'], sd['embeddings.LayerNorm.bias']
    xh = ln_hat(x); x = xh * g + b
    B = ids.shape[0]; d = H // nh
    for i in range(L):
        p = f'encoder.layer.{i}.'
        def qkv(name):
            m = modes['qkv']
            if m == 'i8' and modes.get('qkv_scheme') == 'fold':
                return folded(xh, g, b, p + name, modes.get('act', 'asym'))
            return lin(x, p + name, m)
        q = qkv('attention.self.query'); k = qkv('attention.self.key'); v = qkv('attention.self.value')
        sh = lambda t: t.view(B, T, nh, d).transpose(1, 2)
        a = torch.softmax(sh(q) @ sh(k).transpose(-1, -2) / math.sqrt(d), -1) @ sh(v)
        ctx = a.transpose(1, 2).reshape(B, T, H)
        y = lin(ctx, p + 'attention.output.dense', modes['ao'])
        g, b = sd[p + 'attention.output.LayerNorm.weight'], sd[p + 'attention.output.LayerNorm.bias']
        xh = ln_hat(x + y); x = xh * g + b
        m = modes['up']
        if m == 'i8' and modes.get('up_scheme') == 'fold':
            u = folded(xh, g, b, p + 'intermediate.dense', modes.get('act', 'asym'))
        elif m == 'i8' and modes.get('up_scheme') == 'wonly':
            u = x @ Wget(p + 'intermediate.dense.weight', 'i8').T + sd[p + 'intermediate.dense.bias']
        elif m == 'i8' and modes.get('up_scheme') == 'aonly':
            u = aq_asym(x) @ sd[p + 'intermediate.dense.weight'].T + sd[p + 'intermediate.dense.bias']
        elif m == 'i8' and modes.get('up_scheme') in ('res3', 'xres', 'wres'):
            u = two_part(x, p + 'intermediate.dense', modes['up_scheme'])
        elif m == 'i8' and modes.get('up_scheme') == 'sym':
            u = lin(x, p + 'intermediate.dense', m, act='sym')
        else:
            u = lin(x, p + 'intermediate.dense', m)
        u = torch.nn.functional.gelu(u)
        y = lin(u, p + 'output.dense', modes['down'])
        g, b = sd[p + 'output.LayerNorm.weight'], sd[p + 'output.LayerNorm.bias']
        xh = ln_hat(x + y); x = xh * g + b
    return x

def two_part(x, name, scheme):
    # gemm_int8.c's two-part int8: x = x_hi + x_lo (x_lo quantizes what x_hi missed, each
    # per-token asymmetric u8), W = W_hi + W_lo (likewise, per-channel symmetric int8).
    # res3 (what the int8 mode runs): x_hi·W_hi + x_lo·W_hi + x_hi·W_lo; xres: (x_hi + x_lo)·W_hi,
    # two passes over one int8 W; wres: x_hi·(W_hi + W_lo), two passes over one u8 x.
    key = (name, 'two_part')
    if key not in cache:
        W = sd[name + '.weight']; Wh = wq(W)
        cache[key] = (Wh, wq(W - Wh))
    Wh, Wl = cache[key]
    xh = aq_asym(x); xl = aq_asym(x - xh)
    b = sd[name + '.bias']
    if scheme == 'res3': return xh @ Wh.T + xl @ Wh.T + xh @ Wl.T + b
    if scheme == 'xres': return (xh + xl) @ Wh.T + b
    return xh @ (Wh + Wl).T + b

def folded(xh, g, beta, name, act):
    key = (name, 'fold')
    if key not in cache:
        W = sd[name + '.weight']
        Wf = W * g[None, :]
        bf = (W.double() @ beta.double()).float() + sd[name + '.bias']
        cache[key] = (wq(Wf), bf)
    Wf, bf = cache[key]
    xq = aq_asym(xh) if act == 'asym' else aq_sym(xh)
    return xq @ Wf.T + bf

torch.manual_seed(0)
B, T = int(sys.argv[2]) if len(sys.argv) > 2 else 4, int(sys.argv[3]) if len(sys.argv) > 3 else 256
ids = torch.randint(5, min(cfg['vocab_size'], 250000), (B, T)); ids[:, 0] = 0; ids[:, -1] = 2
configs = {
 'all_i8': dict(qkv='i8', ao='i8', up='i8', down='i8'),
 'up_bf16': dict(qkv='i8', ao='i8', up='bf16', down='i8'),
 'up_fold': dict(qkv='i8', ao='i8', up='i8', down='i8', up_scheme='fold'),
 'up_fold_sym': dict(qkv='i8', ao='i8', up='i8', down='i8', up_scheme='fold', act='sym'),
 'up_qkv_fold': dict(qkv='i8', ao='i8', up='i8', down='i8', up_scheme='fold', qkv_scheme='fold'),
 'up_wonly': dict(qkv='i8', ao='i8', up='i8', down='i8', up_scheme='wonly'),
 'up_aonly': dict(qkv='i8', ao='i8', up='i8', down='i8', up_scheme='aonly'),
 'up_res3': dict(qkv='i8', ao='i8', up='i8', down='i8', up_scheme='res3'),
 'up_xres': dict(qkv='i8', ao='i8', up='i8', down='i8', up_scheme='xres'),
 'up_wres': dict(qkv='i8', ao='i8', up='i8', down='i8', up_scheme='wres'),
 'up_f32': dict(qkv='i8', ao='i8', up='f32', down='i8'),
 'down_f32': dict(qkv='i8', ao='i8', up='i8', down='f32'),
 'only_up_i8': dict(qkv='f32', ao='f32', up='i8', down='f32'),
 'only_up_fold': dict(qkv='f32', ao='f32', up='i8', down='f32', up_scheme='fold'),
 'only_down_i8': dict(qkv='f32', ao='f32', up='f32', down='i8'),
 'only_qkv_i8': dict(qkv='f32', ao='f32', up='f32', down='f32') | dict(qkv='i8'),
 'only_qkv_fold': dict(qkv='i8', ao='f32', up='f32', down='f32', qkv_scheme='fold'),
}
sel = sys.argv[4].split(',') if len(sys.argv) > 4 else list(configs)
with torch.no_grad():
    ref = forward(ids, dict(qkv='f32', ao='f32', up='f32', down='f32'))
    rd = torch.nn.functional.normalize(ref[:, 0], dim=-1)
    for name in sel:
        out = forward(ids, configs[name])
        od = torch.nn.functional.normalize(out[:, 0], dim=-1)
        cos = (od * rd).sum(-1)
        tok = torch.nn.functional.cosine_similarity(out, ref, dim=-1)
        print(f'{name:16s} dense cos mean {cos.mean():.6f} min {cos.min():.6f}  1-cos {1-cos.mean():.2e}  token-cos mean {tok.mean():.6f}', flush=True)
