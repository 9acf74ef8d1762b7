# GPU only. Fully sharded data parallel: parameters, gradients and optimiser state sharded over the GPUs
# (MMEngine's FlexibleRunner + FSDPStrategy, NCCL). FSDP has no CPU path; tools/train.py refuses it
# without CUDA. Add this file to an experiment's _base_ and run `tools/dist_train.sh CONFIG NGPU`.
# The non-finite guard checks each rank's own gradient shard here, not the global norm.
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        auto_wrap_policy=dict(
            type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy', min_num_params=10_000_000
        ),
        use_orig_params=True,  # frozen and trained parameters in one wrapped module
    ),
)
