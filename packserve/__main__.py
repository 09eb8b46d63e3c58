from packserve.cli import main

main()
