from .attention import AttentionBackendError, attention, available_backends

__all__ = ['attention', 'available_backends', 'AttentionBackendError']
