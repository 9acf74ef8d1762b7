# GPU only. DeepSpeed ZeRO stage 2 with bf16 (MMEngine's FlexibleRunner + DeepSpeedStrategy); needs CUDA
# and `pip install deepspeed`, and tools/train.py refuses it without CUDA. Add this file to an
# experiment's _base_ and run `tools/dist_train.sh CONFIG NGPU`. DeepSpeed steps and clips itself, so
# tools/train.py swaps the schedule's optim_wrapper for DeepSpeedOptimWrapper (same optimizer and
# paramwise_cfg; its accumulative_counts and clip_grad become gradient_accumulation_steps and
# gradient_clipping below) and the non-finite guard checks only the loss terms.
strategy = dict(
    type='DeepSpeedStrategy',
    bf16=dict(enabled=True),
    zero_optimization=dict(stage=2, overlap_comm=True, contiguous_gradients=True),
    gradient_clipping=1.0,
)
