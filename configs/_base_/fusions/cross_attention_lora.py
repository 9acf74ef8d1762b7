# Flamingo's gated cross-attention blocks (cross_attention.py) beside a language model that trains, such as
# language_model.train='lora': the fusion leaves the language model's own train mode in charge.
_base_ = ['./cross_attention.py']
fusion = dict(freeze_language_model=False)
