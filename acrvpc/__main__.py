from acrvpc.cli.app import main

main()
