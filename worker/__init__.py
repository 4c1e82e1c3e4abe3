"""The INS identity worker: RabbitMQ requests in, INSi out, events back."""

__version__ = "0.1.0"
