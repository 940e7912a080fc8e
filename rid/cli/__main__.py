from rid.cli import app

app()
