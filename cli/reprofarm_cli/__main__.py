from reprofarm_cli.main import main

main()
