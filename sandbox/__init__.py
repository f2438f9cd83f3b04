"""The embedded sandbox: old and new systems, hub, SFTP/FTP drop with a receiving agent.

Real servers on 127.0.0.1, so steps and gates are tested against real HTTP,
SQLite, SSH/SFTP and FTP rather than mocks. Modules:

- `data`: deterministic synthetic data and the `data:` faults that bend it
- `channels`, `systems`, `web`: the old/new system HTTP services and the hub
- `keys`, `drop`: SSH/SFTP (paramiko) and FTP (pyftpdlib) servers on `<dir>/drop`
- `receiver`: the tax bureau's agent answering uploads in `drop/outbox/`
- `faults`: fault specs shared by all of them
- `runtime`, `testing`, `__main__`: start them together (`running_sandbox`, `python -m sandbox`)
"""
