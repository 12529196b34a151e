from reprofarm_agent.cli import main

main()
