from acrvpc.cli.app import app

app()
