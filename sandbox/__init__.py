"""The embedded sandbox: old and new systems, hub, SFTP/FTP drop with a receiving agent."""
