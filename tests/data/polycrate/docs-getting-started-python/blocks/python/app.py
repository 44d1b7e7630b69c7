import os
print('Hello, '+os.getenv('BLOCK_CONFIG_GREETER')+'!')
