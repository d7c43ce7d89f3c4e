"""``elmo train``: the driver (:mod:`.job`), the Ray Train worker loop (:mod:`.worker`), the data
plan (:mod:`.data`), the metrics log (:mod:`.metrics`) and the Ray Train calls (:mod:`.ray_train`)."""
