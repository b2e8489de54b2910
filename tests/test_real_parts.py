"""The real parts that the fast tests replace with fakes: MiniLM student, sentence embedder."""

import numpy as np
import pytest
from conftest import LABELS, make_examples

from loop.config import FilterConfig, section
from loop.embedder import SentenceEmbedder
from loop.filters import Reference, screen
from loop.records import Candidate, Example
from loop.students.encoder import EncoderStudent

pytestmark = pytest.mark.slow


def test_encoder_student_trains_and_predicts():
    student = EncoderStudent(section("student", epochs=2, max_length=32, batch_size=16), LABELS)
    before = student.state_digest()
    train = make_examples(48, seed=3)
    student.fit(train)
    after = student.state_digest()
    assert after != before  # retraining changed the weights
    pred = student.predict(train[:10])
    assert pred.probs.shape == (10, 3) and np.allclose(pred.probs.sum(1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(pred.embeddings, axis=1), 1, atol=1e-4)
    assert set(pred.labels) <= set(LABELS)
    student.fit(train + [Example("an extra, generated example of pure joy", "positive", source="generated")])
    assert student.state_digest() not in (before, after)


def test_real_embedder_screens_paraphrases_and_contamination():
    emb = SentenceEmbedder("packaged:all-minilm-l6-v2")
    known = Reference(emb, [Example("The flight was delayed again, I am so annoyed", "negative")])
    evaluation = Reference(emb, [Example("Loving the new phone, battery lasts forever", "positive")])
    cands = [Candidate("the flight was delayed again. I am so annoyed!", "negative", "r", "targeted"),
             Candidate("loving the new phone, the battery lasts forever!!", "positive", "r", "targeted"),
             Candidate("The weather report says rain tomorrow afternoon", "neutral", "r", "targeted")]
    screen(cands, known, evaluation, FilterConfig(near_dup_cosine=0.9, contamination_cosine=0.9),
           samples_left=10)
    assert [c.reason or c.verdict for c in cands] == ["near_duplicate", "contamination", "accepted"]
