from lightning_deblur.commands.fit import main

main()
