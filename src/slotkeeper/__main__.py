from slotkeeper.cli import main

main()
