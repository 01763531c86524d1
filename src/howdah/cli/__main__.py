from howdah.cli import main

main()
