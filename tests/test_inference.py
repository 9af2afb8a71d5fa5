"""The model handler on a real SavedModel: a batch the model fails on costs only the image it rejects."""

from __future__ import annotations

import numpy as np

from aeops.inference import Failure, ImageRestorationHandler, Restorable
from tests.model_fixtures import REJECTED_HEIGHT


def test_a_failed_sub_batch_is_retried_image_by_image(one_size_rejecting_model):
    handler = ImageRestorationHandler(one_size_rejecting_model, pad_multiple=16)
    model = handler.load_model()
    rng = np.random.default_rng(0)
    culprit = rng.integers(0, 256, (REJECTED_HEIGHT - 3, 20, 3), np.uint8)  # padded to 32 high: rejected
    fine = [rng.integers(0, 256, (40, 20 + i, 3), np.uint8) for i in range(4)]  # padded to 48x32: accepted
    batch = [Restorable(fine[0]), Restorable(culprit), Restorable(fine[1]), Restorable(culprit, restore=False),
             Restorable(fine[2]), Restorable(fine[3])]
    results = handler.run_inference(batch, model)
    assert [type(r.inference).__name__ for r in results] == ["ndarray", "Failure", "ndarray", "NoneType",
                                                             "ndarray", "ndarray"]
    for item, result in zip(batch, results):
        assert result.example is item.image
        if isinstance(result.inference, np.ndarray):
            np.testing.assert_array_equal(result.inference, item.image)  # an identity model, cropped back
    failure = results[1].inference
    assert isinstance(failure, Failure) and failure.reason.startswith("InvalidArgumentError: ")
    assert f"rejects images {REJECTED_HEIGHT} pixels high" in failure.reason and "\n" not in failure.reason
