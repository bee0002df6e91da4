"""anna.transformer.forward: the one token-wise forward pass that Transformer.run, the decompiler and
the batched evaluator share, batched over leading axes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anna.errors import InputError, ShapeError
from anna.transformer import MLP, Head, Layer, Linear, Placement, TokenEmbedding, Transformer, init_transformer
from anna.transformer.forward import embed_tokens, finish_layer, head_qkv, mlp_forward, tokenwise


def _model(heads, causal, mlp, dtype, seed):
    return init_transformer(vocab_size=6, dim=3 * heads, n_outputs=2, depth=2, heads=heads, max_len=9, mlp=mlp,
                            causal=causal, seed=seed, dtype=dtype)


@settings(max_examples=25, deadline=None)
@given(heads=st.integers(1, 2), causal=st.booleans(), mlp=st.booleans(), rows=st.integers(1, 4),
       n=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_batched_pieces_equal_the_per_sequence_forward_pass(heads, causal, mlp, rows, n, seed):
    model = _model(heads, causal, mlp, np.float64, seed)
    inputs = np.random.default_rng(seed).integers(0, 6, size=(rows, n))
    traces = [model.run(row) for row in inputs]
    x = embed_tokens(model.embedding, inputs)
    np.testing.assert_array_equal(x, np.stack([t.states[0] for t in traces]))
    positions = np.arange(n)
    for l, layer in enumerate(model.layers):
        attended = []
        for h, head in enumerate(layer.heads):
            q, k, v = head_qkv(head, x)
            for r in range(rows):
                one = head_qkv(head, x[r], positions)
                for batched, single in zip((q, k, v), one):
                    np.testing.assert_allclose(batched[r], single, rtol=1e-12, atol=1e-12)
            attended.append(np.stack([head.attention(x[r], positions, causal, model.head_seed(l, h))[0]
                                      for r in range(rows)]))
        x = finish_layer(model, l, x, attended)
        np.testing.assert_allclose(x, np.stack([t.states[l + 1] for t in traces]), rtol=1e-12, atol=1e-12)


def test_callables_see_each_sequences_own_positions_in_a_batch():
    seen = []

    def f(x, positions):
        seen.append(positions.copy())
        return x + positions[:, None]

    out = tokenwise("f", f, np.zeros((2, 3, 1)))
    assert seen[0].tolist() == [0, 1, 2, 0, 1, 2]
    assert out[:, :, 0].tolist() == [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]


def test_a_placed_head_output_adds_its_block_like_the_dense_placement():
    def build(output):
        head = Head("softmax", np.eye(4)[:, :2], np.eye(4)[:, :2], np.eye(4)[:, :2], output)
        return Transformer(TokenEmbedding(np.arange(20.0).reshape(5, 4) / 7), (Layer((head,)),), np.eye(4))
    placed, dense = build(Placement(start=1, width=2, dim=4)), build(np.eye(4)[1:3])
    attended = [np.arange(6.0).reshape(3, 2)]
    x = np.ones((3, 4))
    np.testing.assert_array_equal(finish_layer(placed, 0, x, attended), finish_layer(dense, 0, x, attended))
    inputs = np.array([4, 0, 2])
    np.testing.assert_array_equal(placed(inputs), dense(inputs))


def test_finish_layer_names_the_head_whose_output_has_the_wrong_width():
    head = Head("softmax", np.eye(2), np.eye(2), np.eye(2), lambda a, p: a[:, :1], value_dim=2)
    model = Transformer(TokenEmbedding(np.eye(2)), (Layer((head,)),), np.eye(2))
    with pytest.raises(ShapeError, match="layer 0 head 0 output must have d = 2 columns"):
        finish_layer(model, 0, np.ones((3, 2)), [np.ones((3, 2))])
    with pytest.raises(ShapeError, match="layer 0 head 0 output"):
        model(np.array([0, 1]))


def test_embedding_refuses_ids_outside_the_vocabulary_and_sequences_beyond_max_len():
    embedding = TokenEmbedding(np.eye(3), np.zeros((4, 3)))
    with pytest.raises(InputError, match=r"token ids in \[0, 3\)"):
        embed_tokens(embedding, np.array([[0, 3]]))
    with pytest.raises(InputError, match="longer than max_len 4"):
        embed_tokens(embedding, np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(InputError, match="position 4 is beyond"):
        embed_tokens(embedding, np.array([0]), positions=np.array([4]))


@given(dtype=st.sampled_from([np.float32, np.float64]), rows=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_fused_mlp_is_bit_identical_to_the_plain_mlp(dtype, rows, seed):
    rng = np.random.default_rng(seed)
    mlp = MLP(Linear(rng.standard_normal((3, 12)).astype(dtype), rng.standard_normal(12).astype(dtype)),
              Linear(rng.standard_normal((12, 3)).astype(dtype), rng.standard_normal(3).astype(dtype)))
    y = (rng.standard_normal((rows, 3)) * 4).astype(dtype)
    np.testing.assert_array_equal(mlp_forward(mlp, y), mlp(y))
